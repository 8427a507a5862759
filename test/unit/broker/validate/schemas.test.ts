import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SchemaRegistry } from '../../../../services/broker/validate/schemas';
import { expectConfigError } from '../../../support/config-error';
import { tempDir } from '../../../support/tmp';

const notesSchema = {
  type: 'object',
  properties: { title: { type: 'string' } },
  required: ['title'],
  additionalProperties: false,
};


describe('SchemaRegistry.fromSchemas', () => {
  it('compiles one validator per collection', () => {
    const reg = SchemaRegistry.fromSchemas([
      { collection: 'notes', schema: notesSchema },
      { collection: 'events', schema: { type: 'object' } },
    ]);
    assert.deepEqual(reg.collections.sort(), ['events', 'notes']);
    const validate = reg.get('notes');
    assert.ok(validate);
    assert.equal(validate({ title: 'x' }), true);
    assert.equal(validate({ title: 1 }), false);
    assert.equal(reg.get('other'), undefined);
  });

  it('refuses a schema with an unknown keyword (strict mode)', () => {
    const err = expectConfigError(() => SchemaRegistry.fromSchemas([{ collection: 'notes', schema: { type: 'object', requird: ['title'] } }]));
    assert.match(err.message, /^notes: schema does not compile \(.*requird.*\)$/);
  });

  it('refuses a schema that does not compile for other reasons', () => {
    const err = expectConfigError(() => SchemaRegistry.fromSchemas([{ collection: 'notes', schema: { type: 'objekt' } }]));
    assert.match(err.message, /notes: schema does not compile/);
  });

  it('refuses a collection name that is not allowed', () => {
    for (const collection of ['Notes', 'system.users', '$cmd', '1notes', 'a-b', '']) {
      const err = expectConfigError(() => SchemaRegistry.fromSchemas([{ collection, schema: notesSchema }]));
      assert.match(err.message, /not a valid collection name/, collection);
    }
  });

  it('names the origin and lists every problem at once', () => {
    const err = expectConfigError(() =>
      SchemaRegistry.fromSchemas([
        { collection: 'Bad', schema: notesSchema, origin: 'SCHEMA_DIR="/s": Bad.json' },
        { collection: 'fine', schema: notesSchema },
        { collection: 'typo', schema: { type: 'object', propertis: {} }, origin: 'SCHEMA_DIR="/s": typo.json' },
      ]),
    );
    assert.equal(err.problems.length, 2);
    assert.match(err.problems[0]!, /^SCHEMA_DIR="\/s": Bad\.json: not a valid collection name/);
    assert.match(err.problems[1]!, /^SCHEMA_DIR="\/s": typo\.json: schema does not compile/);
  });
});

describe('SchemaRegistry.load', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.cleanup());

  it('loads every *.json file as the schema of the collection it names, ignoring other files', () => {
    writeFileSync(join(tmp.dir, 'notes.json'), JSON.stringify(notesSchema));
    writeFileSync(join(tmp.dir, 'events.json'), JSON.stringify({ type: 'object' }));
    writeFileSync(join(tmp.dir, 'README.md'), '# not a schema {');
    writeFileSync(join(tmp.dir, 'notes.json.bak'), '{');
    const reg = SchemaRegistry.load(tmp.dir);
    assert.deepEqual(reg.collections, ['events', 'notes']);
    assert.equal(reg.get('notes')!({ title: 'x' }), true);
    assert.equal(reg.get('notes')!({}), false);
  });

  it('names a *.json file that is not valid JSON', () => {
    writeFileSync(join(tmp.dir, 'notes.json'), JSON.stringify(notesSchema));
    writeFileSync(join(tmp.dir, 'broken.json'), '{"type": "object",');
    const err = expectConfigError(() => SchemaRegistry.load(tmp.dir));
    assert.equal(err.message, `SCHEMA_DIR=${JSON.stringify(tmp.dir)}: broken.json is not valid JSON`);
  });

  it('names a file whose name is not a valid collection name', () => {
    writeFileSync(join(tmp.dir, 'Bad-Name.json'), JSON.stringify(notesSchema));
    const err = expectConfigError(() => SchemaRegistry.load(tmp.dir));
    assert.match(err.message, /^SCHEMA_DIR=".*": Bad-Name\.json: not a valid collection name/);
  });

  it('names a file whose schema does not compile', () => {
    writeFileSync(join(tmp.dir, 'notes.json'), JSON.stringify({ type: 'object', unknownKeyword: true }));
    const err = expectConfigError(() => SchemaRegistry.load(tmp.dir));
    assert.match(err.message, /notes\.json: schema does not compile/);
  });

  it('reports a directory that cannot be read', () => {
    const missing = join(tmp.dir, 'absent');
    const err = expectConfigError(() => SchemaRegistry.load(missing));
    assert.equal(err.message, `SCHEMA_DIR=${JSON.stringify(missing)}: cannot read (ENOENT)`);
  });

  it('gives an empty registry for an empty directory', () => {
    assert.deepEqual(SchemaRegistry.load(tmp.dir).collections, []);
  });
});
