/**
 * Writes the public API's OpenAPI document for a schema directory: the one shipped as
 * docs/openapi.json is for config/schemas; an operator with other collections renders one
 * for their SCHEMA_DIR and generates clients from that.
 *
 *   node dist/tools/openapi/render.js [--schemas <dir>] [--server https://api.example.com] [--out <file>]
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isCollectionName } from '../../services/common/ids/names';
import { buildOpenApiDocument } from './document';

/** The project root, from dist/tools/openapi/. */
const ROOT = join(__dirname, '..', '..', '..');

/** `<dir>/<collection>.json`, as the broker's SchemaRegistry reads them. */
export function readCollectionSchemas(dir: string): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const name = file.slice(0, -'.json'.length);
    if (!isCollectionName(name)) throw new TypeError(`${join(dir, file)}: ${JSON.stringify(name)} is not a collection name`);
    const schema: unknown = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new TypeError(`${join(dir, file)}: not a JSON Schema object`);
    out[name] = schema as Record<string, unknown>;
  }
  return out;
}

/** The document as written to disk: two-space JSON with a final newline. */
export function renderOpenApi(opts: { schemaDir: string; serverUrl?: string }): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const doc = buildOpenApiDocument({ collections: readCollectionSchemas(opts.schemaDir), version: pkg.version, ...(opts.serverUrl !== undefined ? { serverUrl: opts.serverUrl } : {}) });
  return `${JSON.stringify(doc, null, 2)}\n`;
}

if (require.main === module) {
  const { values } = parseArgs({ options: { schemas: { type: 'string' }, server: { type: 'string' }, out: { type: 'string' } } });
  const text = renderOpenApi({ schemaDir: values.schemas ?? join(ROOT, 'config', 'schemas'), ...(values.server !== undefined ? { serverUrl: values.server } : {}) });
  if (values.out !== undefined) writeFileSync(values.out, text);
  else process.stdout.write(text);
}
