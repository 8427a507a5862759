import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../errors/config-error';

/**
 * Environment variables, declared once with their type and checked once at start.
 * Every variable is a zod schema over `string | undefined` (an empty string counts as
 * unset, as `FOO=` in a compose file means "no value"). A failure names every bad
 * variable with what was expected, on one line, so an operator fixes all of them at once.
 */
export type EnvShape = Record<string, z.ZodType<unknown, string | undefined>>;
export type EnvOf<S extends EnvShape> = { [K in keyof S]: z.output<S[K]> };

const SECRET_NAME = /SECRET|PASSWORD|TOKEN|KEY/;
/** A secret-looking name, except `*_FILE` variables: those hold a path, shown to help the operator. */
const isSecretName = (name: string): boolean => SECRET_NAME.test(name) && !name.endsWith('_FILE');

export function parseEnv<S extends EnvShape>(shape: S, env: NodeJS.ProcessEnv = process.env): EnvOf<S> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(shape)) {
    const raw = env[name];
    const value = raw === undefined || raw.trim() === '' ? undefined : raw;
    const result = schema.safeParse(value);
    if (result.success) {
      out[name] = result.data;
    } else {
      const shown = value === undefined ? '(unset)' : isSecretName(name) ? '(hidden)' : JSON.stringify(value);
      const why = result.error.issues.map((i) => i.message).join(', ');
      problems.push(`${name}=${shown}: ${why}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as EnvOf<S>;
}

type Raw = string | undefined;

function withDefault<T>(def: string | undefined, inner: z.ZodType<T, string>, required: string): z.ZodType<T, Raw> {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const value = v ?? def;
      if (value === undefined) {
        ctx.addIssue({ code: 'custom', message: `is required (${required})` });
        return z.NEVER;
      }
      const parsed = inner.safeParse(value.trim());
      if (!parsed.success) {
        for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
        return z.NEVER;
      }
      return parsed.data;
    });
}

function intSchema(min: number, max: number): z.ZodType<number, string> {
  const expected = `expected an integer from ${min} to ${max}`;
  return z
    .string()
    .regex(/^-?\d+$/, expected)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, expected);
}

/** Variable helpers. `def` is the default as the operator would write it. */
export const env = {
  int(opts: { min: number; max: number; def?: number }): z.ZodType<number, Raw> {
    return withDefault(opts.def?.toString(), intSchema(opts.min, opts.max), `an integer from ${opts.min} to ${opts.max}`);
  },

  port(def?: number): z.ZodType<number, Raw> {
    return withDefault(def?.toString(), intSchema(1, 65535), 'a TCP port 1-65535');
  },

  str(opts: { def?: string; pattern?: RegExp; expected?: string } = {}): z.ZodType<string, Raw> {
    const expected = opts.expected ?? (opts.pattern ? `expected to match ${opts.pattern}` : 'a string');
    const inner = opts.pattern ? z.string().regex(opts.pattern, `expected ${expected}`) : z.string();
    return withDefault(opts.def, inner, expected);
  },

  oneOf<const T extends readonly [string, ...string[]]>(values: T, def?: T[number]): z.ZodType<T[number], Raw> {
    const expected = `one of ${values.join(', ')}`;
    return withDefault(def, z.enum(values, { error: `expected ${expected}` }), expected);
  },

  bool(def: boolean): z.ZodType<boolean, Raw> {
    const inner = z
      .string()
      .regex(/^(true|false|1|0|yes|no)$/i, 'expected true or false')
      .transform((v) => /^(true|1|yes)$/i.test(v));
    return withDefault(String(def), inner, 'true or false');
  },

  absPath(def?: string): z.ZodType<string, Raw> {
    return withDefault(def, z.string().regex(/^\/[^\0]*$/, 'expected an absolute path'), 'an absolute path');
  },

  /** Comma-separated list; each item checked by `item`. */
  list<T>(item: z.ZodType<T, string>, opts: { def?: string; min?: number; max?: number; expected: string }): z.ZodType<T[], Raw> {
    const inner = z
      .string()
      .transform((v, ctx) => {
        const parts = v.split(',').map((p) => p.trim()).filter((p) => p !== '');
        const out: T[] = [];
        for (const part of parts) {
          const r = item.safeParse(part);
          if (!r.success) {
            ctx.addIssue({ code: 'custom', message: `expected ${opts.expected} (bad item ${JSON.stringify(part)})` });
            return z.NEVER;
          }
          out.push(r.data);
        }
        if (out.length < (opts.min ?? 0) || out.length > (opts.max ?? Infinity)) {
          ctx.addIssue({ code: 'custom', message: `expected ${opts.expected} (${opts.min ?? 0} to ${opts.max ?? 'any'} items)` });
          return z.NEVER;
        }
        return out;
      });
    return withDefault(opts.def, inner, opts.expected);
  },

  optional<T>(schema: z.ZodType<T, Raw>): z.ZodType<T | undefined, Raw> {
    return z
      .string()
      .optional()
      .transform((v, ctx) => {
        if (v === undefined) return undefined;
        const r = schema.safeParse(v);
        if (!r.success) {
          for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
          return z.NEVER;
        }
        return r.data;
      });
  },
};

/** String item for `env.list`, optionally constrained by a pattern. */
export function strItem(pattern?: RegExp): z.ZodType<string, string> {
  return pattern ? z.string().regex(pattern) : z.string().min(1);
}

/** Integer item for `env.list`. */
export function intItem(min: number, max: number): z.ZodType<number, string> {
  return intSchema(min, max);
}

/** Reads a file named by configuration; an unreadable file is a configuration error naming the variable. */
export function readConfigFile(variable: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`${variable}=${JSON.stringify(path)}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
}

/**
 * Reads a secret from a file named by configuration (the `NAME_FILE` convention), trimmed.
 * A missing or empty file is a configuration error naming the variable.
 */
export function readSecretFile(variable: string, path: string): string {
  const text = readConfigFile(variable, path).trim();
  if (text === '') throw new ConfigError([`${variable}=${JSON.stringify(path)}: file is empty`]);
  return text;
}
