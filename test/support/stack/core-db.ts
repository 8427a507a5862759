import type { Stack } from './stack';

/**
 * Reads core's database from inside the core container, as its own service user does
 * (the database listens on the container's loopback only). `body` is JavaScript that has
 * `records` (the records collection) in scope and evaluates to a promise of a JSON value.
 * Record content is stored encrypted, so `plain(doc)` is in scope too: a records document's
 * content, decrypted with the image's own code and core's key file (a record stored in clear
 * before encryption is returned as it is). A filter on `data.*` matches nothing any more:
 * read the documents and filter on plain(doc).
 */
export async function queryCore<T>(stack: Stack, body: string): Promise<T> {
  const res = await stack.exec('core', ['node', '-e', `
    const { MongoClient } = require('/app/node_modules/mongodb');
    const pw = require('fs').readFileSync('/var/lib/nonstop/data/credentials/db.password', 'utf8').trim();
    const c = new MongoClient('mongodb://127.0.0.1:27017/?authSource=admin&directConnection=true', { auth: { username: 'nonstop', password: pw } });
    const records = c.db('nonstop').collection('records');
    const { DataKeyRing, readDataKeyFile } = require('/app/dist/services/core/storage/data-keys.js');
    const { openRecord } = require('/app/dist/services/core/storage/record-cipher.js');
    const { fromSealedDoc } = require('/app/dist/services/core/storage/records.js');
    const keys = DataKeyRing.of(readDataKeyFile(process.env.CORE_DATA_KEYS_FILE || '/etc/nonstop/core/data-keys.json').set);
    const plain = (doc) => (doc.enc ? JSON.parse(openRecord(keys, { id: doc._id, collection: doc.collection }, fromSealedDoc(doc.enc))) : doc.data);
    Promise.resolve().then(() => ${body})
      .then((v) => { process.stdout.write(JSON.stringify(v)); return c.close(); })
      .catch((err) => { console.error(err.message); process.exit(1); });
  `]);
  if (res.exitCode !== 0) throw new Error(`query at core failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

/** How many records core holds (all, or those matching a filter given as JSON, on fields other than the encrypted content). */
export function countRecords(stack: Stack, filter: Record<string, unknown> = {}): Promise<number> {
  return queryCore<number>(stack, `records.countDocuments(${JSON.stringify(filter)})`);
}

/** How many records core holds whose (decrypted) content has a `title` matching `pattern`. */
export function countRecordsTitled(stack: Stack, pattern: RegExp): Promise<number> {
  return queryCore<number>(stack, `records.find({}).toArray().then((docs) => docs.filter((d) => ${pattern.toString()}.test(String(plain(d).title))).length)`);
}
