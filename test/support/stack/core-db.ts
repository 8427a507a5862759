import type { Stack } from './stack';

/**
 * Reads core's database from inside the core container, as its own service user does
 * (the database listens on the container's loopback only). `body` is JavaScript that has
 * `records` (the records collection) in scope and evaluates to a promise of a JSON value.
 */
export async function queryCore<T>(stack: Stack, body: string): Promise<T> {
  const res = await stack.exec('core', ['node', '-e', `
    const { MongoClient } = require('/app/node_modules/mongodb');
    const pw = require('fs').readFileSync('/var/lib/nonstop/data/credentials/db.password', 'utf8').trim();
    const c = new MongoClient('mongodb://127.0.0.1:27017/?authSource=admin&directConnection=true', { auth: { username: 'nonstop', password: pw } });
    const records = c.db('nonstop').collection('records');
    Promise.resolve().then(() => ${body})
      .then((v) => { process.stdout.write(JSON.stringify(v)); return c.close(); })
      .catch((err) => { console.error(err.message); process.exit(1); });
  `]);
  if (res.exitCode !== 0) throw new Error(`query at core failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

/** How many records core holds (all, or those matching a filter given as JSON). */
export function countRecords(stack: Stack, filter: Record<string, unknown> = {}): Promise<number> {
  return queryCore<number>(stack, `records.countDocuments(${JSON.stringify(filter)})`);
}
