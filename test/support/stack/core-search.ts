import { queryCore } from './core-db';
import type { Stack } from './stack';

/**
 * For each text, how many documents in core's database hold it anywhere (any collection,
 * any field, as the document's JSON). Tests tag a request's payload with a unique canary
 * and ask whether core kept it: a check that survives test order and other records,
 * unlike comparing record counts.
 */
export function documentsHolding(stack: Stack, texts: string[]): Promise<Record<string, number>> {
  return queryCore<Record<string, number>>(stack, `(async () => {
    const texts = ${JSON.stringify(texts)};
    const counts = Object.fromEntries(texts.map((t) => [t, 0]));
    for (const { name } of await records.db.listCollections({}, { nameOnly: true }).toArray()) {
      for await (const doc of records.db.collection(name).find({})) {
        // A record's content is encrypted: searched as core would answer it.
        const json = JSON.stringify(name === 'records' ? { ...doc, enc: undefined, data: plain(doc) } : doc);
        for (const t of texts) if (json.includes(t)) counts[t] += 1;
      }
    }
    return counts;
  })()`);
}
