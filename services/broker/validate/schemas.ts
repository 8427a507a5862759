import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020';
import { ConfigError } from '../../common/errors/config-error';
import { isCollectionName } from '../../common/ids/names';

/**
 * One JSON Schema per collection, from `<dir>/<collection>.json`, compiled once at start.
 * A schema that does not compile, or a file name that is not a valid collection name, is a
 * configuration error at start — never a surprise at request time. Strict mode: unknown
 * keywords are errors too (a typo in a schema must not silently allow everything).
 */
export class SchemaRegistry {
  private constructor(private readonly validators: ReadonlyMap<string, ValidateFunction>) {}

  static load(dir: string): SchemaRegistry {
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
    } catch (err) {
      throw new ConfigError([`SCHEMA_DIR=${JSON.stringify(dir)}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
    }
    return SchemaRegistry.fromSchemas(
      files.map((file) => {
        let schema: unknown;
        try {
          schema = JSON.parse(readFileSync(join(dir, file), 'utf8'));
        } catch {
          throw new ConfigError([`SCHEMA_DIR=${JSON.stringify(dir)}: ${file} is not valid JSON`]);
        }
        return { collection: file.slice(0, -'.json'.length), schema, origin: `SCHEMA_DIR=${JSON.stringify(dir)}: ${file}` };
      }),
    );
  }

  static fromSchemas(entries: { collection: string; schema: unknown; origin?: string }[]): SchemaRegistry {
    const ajv = new Ajv2020({ strict: true, allErrors: false, coerceTypes: false, useDefaults: false, removeAdditional: false, validateFormats: false });
    const validators = new Map<string, ValidateFunction>();
    const problems: string[] = [];
    for (const { collection, schema, origin } of entries) {
      const where = origin ?? collection;
      if (!isCollectionName(collection)) {
        problems.push(`${where}: not a valid collection name (lowercase letters, digits, _; start with a letter)`);
        continue;
      }
      try {
        validators.set(collection, ajv.compile(schema as object));
      } catch (err) {
        problems.push(`${where}: schema does not compile (${(err as Error).message})`);
      }
    }
    if (problems.length > 0) throw new ConfigError(problems);
    return new SchemaRegistry(validators);
  }

  get(collection: string): ValidateFunction | undefined {
    return this.validators.get(collection);
  }

  get collections(): string[] {
    return [...this.validators.keys()];
  }
}
