import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020';

/**
 * Checks real HTTP answers against the shipped OpenAPI document (docs/openapi.json): the
 * operation is found by method and path template, the response by status, and the answer
 * must carry the headers documented as required, match the schema of every documented
 * header it carries, have a documented content type and a JSON body matching its schema.
 * A status the operation does not document is a problem, as is a path the document does
 * not have. A method a path does not list must be answered with components.responses.
 * Error405 (the document says so there).
 */
export const OPENAPI_PATH = join(__dirname, '..', '..', '..', 'docs', 'openapi.json');

type Json = Record<string, unknown>;

export interface ContractAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

const DOC_URI = 'urn:nonstop:openapi';

/** RFC 3339 date-time (JSON Schema's `date-time`): a time zone is required. */
const DATE_TIME = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/i;

export class OpenApiContract {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  private readonly templates: { path: string; pattern: RegExp; params: number }[];

  constructor(readonly doc: Json) {
    this.ajv.addFormat('date-time', { type: 'string', validate: (s: string) => DATE_TIME.test(s) && !Number.isNaN(Date.parse(s)) });
    this.ajv.addSchema(doc, DOC_URI);
    // A concrete path matches before a templated one (OpenAPI's path matching rule).
    this.templates = Object.keys(doc.paths as Json)
      .map((path) => ({
        path,
        pattern: new RegExp(`^${path.split(/(\{[^}]+\})/).map((part) => (part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))).join('')}$`),
        params: (path.match(/\{/g) ?? []).length,
      }))
      .sort((a, b) => a.params - b.params);
  }

  static load(file = OPENAPI_PATH): OpenApiContract {
    return new OpenApiContract(JSON.parse(readFileSync(file, 'utf8')) as Json);
  }

  /** The path template a request path (query string ignored) falls under, if any. */
  template(path: string): string | undefined {
    const bare = path.split('?')[0]!;
    return this.templates.find((t) => t.pattern.test(bare))?.path;
  }

  /** What is wrong with this answer to `method path`; empty when it matches the document. */
  problems(method: string, path: string, answer: ContractAnswer): string[] {
    const template = this.template(path);
    if (template === undefined) return [`${path}: no path in the document matches`];
    const item = (this.doc.paths as Record<string, Json>)[template]!;
    const op = item[method.toLowerCase()] as Json | undefined;
    let response: { node: Json; at: string };
    if (op === undefined) {
      if (answer.status !== 405) return [`${method} ${template}: not an operation, yet answered ${answer.status} (only 405 is documented for other methods)`];
      response = this.resolveAt({ $ref: '#/components/responses/Error405' }, '');
    } else {
      const responses = op.responses as Record<string, Json>;
      const key = [String(answer.status), `${String(answer.status)[0]}XX`, 'default'].find((k) => k in responses);
      if (key === undefined) return [`${method} ${template}: status ${answer.status} is not documented (${answer.text.slice(0, 200)})`];
      response = this.resolveAt(responses[key]!, `#/paths/${pointer(template)}/${method.toLowerCase()}/responses/${key}`);
    }
    const out: string[] = [];
    for (const [name, h] of Object.entries((response.node.headers ?? {}) as Record<string, Json>)) {
      const header = this.resolveAt(h, `${response.at}/headers/${pointer(name)}`);
      const value = answer.headers[name.toLowerCase()];
      if (value === undefined) {
        if (header.node.required === true) out.push(`header ${name} is required and missing`);
        continue;
      }
      const schema = header.node.schema as Json;
      const resolved = this.resolveAt(schema, `${header.at}/schema`);
      const typed = (resolved.node.type === 'integer' || resolved.node.type === 'number') && /^-?\d+(\.\d+)?$/.test(String(value)) ? Number(value) : value;
      const validate = this.validator(resolved.at);
      if (!validate(typed)) out.push(`header ${name}: ${JSON.stringify(value)} ${this.ajv.errorsText(validate.errors)}`);
    }
    const content = (response.node.content ?? {}) as Record<string, Json>;
    const type = (answer.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const media = content[type];
    if (media === undefined) return [...out, `content type ${JSON.stringify(type)} is not documented (${Object.keys(content).join(', ')})`];
    let body: unknown;
    try {
      body = JSON.parse(answer.text);
    } catch {
      return [...out, `body is not JSON: ${answer.text.slice(0, 200)}`];
    }
    const validate = this.validator(this.resolveAt(media.schema as Json, `${response.at}/content/${pointer(type)}/schema`).at);
    if (!validate(body)) out.push(`body ${answer.text.slice(0, 300)}: ${this.ajv.errorsText(validate.errors, { separator: '; ' })}`);
    return out;
  }

  /** Follows local $refs (#/components/...) to the object they name, and says where that is. */
  resolveAt(node: Json, at: string): { node: Json; at: string } {
    let n = node;
    let where = at;
    for (let hops = 0; typeof n.$ref === 'string'; hops++) {
      if (hops > 10 || !n.$ref.startsWith('#/')) throw new Error(`cannot resolve ${n.$ref}`);
      where = n.$ref;
      n = n.$ref
        .slice(2)
        .split('/')
        .reduce<unknown>((on, part) => (on as Json | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], this.doc) as Json;
      if (n === undefined) throw new Error(`dangling $ref ${where}`);
    }
    return { node: n, at: where };
  }

  /** The schema at this JSON pointer into the document, compiled in the document's scope (its $refs resolve there). */
  private validator(at: string): ValidateFunction {
    let v = this.compiled.get(at);
    if (!v) {
      v = this.ajv.compile({ $ref: `${DOC_URI}${at}` });
      this.compiled.set(at, v);
    }
    return v;
  }
}

/** A path as one JSON Pointer token. */
function pointer(token: string): string {
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}
