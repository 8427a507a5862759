import assert from 'node:assert/strict';
import { atRestNotes, atRestRows, listScaling, type AtRestMeasurements, type PerOp } from '../../../bench/at-rest-rows';

const op = (ms: number, coreCpuUs = 100, dbCpuUs = 200): PerOp => ({ ms, coreCpuUs, dbCpuUs });

/** Three rounds; insert latency of the small records is the figure under test, the rest constant. */
function measurements(over: Partial<AtRestMeasurements> = {}): AtRestMeasurements {
  const encrypted = [1, 10, 3];
  const plain = [1, 2, 10];
  const store = (size: 'small' | 'large'): AtRestMeasurements['store']['small'] =>
    encrypted.map((e, i) => ({
      encrypted: { insert: op(size === 'small' ? e : 5), read: op(2) },
      plain: { insert: op(size === 'small' ? plain[i]! : 5), read: op(2) },
    }));
  return {
    recordsPerRun: 100,
    bytes: { small: 151, large: 64_041 },
    store: { small: store('small'), large: store('large') },
    cipher: { small: [{ sealUs: 20, openUs: 10 }], large: [{ sealUs: 100, openUs: 60 }] },
    erase: {
      small: [
        { erase: op(4), deleteOne: op(2) },
        { erase: op(6), deleteOne: op(2) },
        { erase: op(5), deleteOne: op(1) },
      ],
      large: [{ erase: op(20), deleteOne: op(10) }],
    },
    list: [
      { records: 1000, page: 20, rounds: [{ list: 100, byId: 50 }] },
      { records: 1000, page: 100, rounds: [{ list: 120, byId: 250 }] },
      { records: 5000, page: 20, rounds: [{ list: 400, byId: 55 }] },
      { records: 5000, page: 100, rounds: [{ list: 480, byId: 275 }] },
    ],
    ...over,
  };
}

describe('bench at-rest: rows from the measurements', () => {
  it('has a row per operation, size and metric, one per erase size and one per collection size and page', () => {
    const rows = atRestRows(measurements());
    // 2 sizes × (insert, read) × (latency, core CPU, FerretDB CPU) + 2 erase + 4 list.
    assert.equal(rows.length, 12 + 2 + 4);
    assert.deepEqual(
      rows.slice(0, 3).map((r) => r.metric),
      ['latency, ms per operation', 'core CPU, µs per operation', 'FerretDB CPU, µs per operation'],
    );
    assert.match(rows[0]!.scenario, /^insert one small record \(151 B of JSON\)/);
    assert.match(rows[12]!.scenario, /^erase one small record/);
    assert.match(rows[14]!.scenario, /^a page of 20 from a collection of 1000 records/);
  });

  it('shows each side as median [min–max] over rounds and takes the ratio round by round, not of the medians', () => {
    const [insert] = atRestRows(measurements());
    assert.equal(insert!.value, '3 [1–10]');
    assert.equal(insert!.baseline, 'before encryption: 2 [1–10]');
    // Per round 1/1, 10/2, 3/10: median 1, where the medians' ratio would be 1.5.
    assert.equal(insert!.ratio, 1);
    assert.match(insert!.note, /^ratio per round 1 \[0\.3–5\]× \(median \[min–max\] over 3 rounds\); 100 records a side/);
  });

  it('leaves a round without a figure (FerretDB CPU of 0) out of the ratio instead of making it infinite', () => {
    const m = measurements();
    m.store.small[0]!.plain.insert.dbCpuUs = 0;
    const row = atRestRows(m).find((r) => r.scenario.startsWith('insert one small') && r.metric.startsWith('FerretDB'))!;
    assert.equal(row.ratio, 1);
    assert.match(row.note, /over 2 of 3 rounds/);
    // Positive control: with every round measured, all three count.
    const all = atRestRows(measurements()).find((r) => r.scenario.startsWith('insert one small') && r.metric.startsWith('FerretDB'))!;
    assert.match(all.note, /over 3 rounds/);
  });

  it('compares erase with the plain deleteOne and keeps both sides\' CPU in the note', () => {
    const erase = atRestRows(measurements()).find((r) => r.scenario.startsWith('erase one small'))!;
    assert.equal(erase.value, '5 [4–6]');
    assert.equal(erase.baseline, 'deleteOne, no secure_delete, no purge: 2 [1–2]');
    // Per round 2, 3, 5.
    assert.equal(erase.ratio, 3);
    assert.match(erase.note, /erase core 100 \[100–100\] µs, FerretDB 200 \[200–200\] µs; deleteOne core 100/);
  });

  it('compares a listed page with reading the same records by id', () => {
    const list = atRestRows(measurements()).find((r) => r.scenario.startsWith('a page of 100 from a collection of 5000'))!;
    assert.equal(list.value, '480 [480–480]');
    assert.equal(list.baseline, 'the same 100 records read by id: 275 [275–275]');
    assert.equal(list.ratio, 1.75);
  });
});

describe('bench at-rest: how listing scales, in words', () => {
  it('gives the growth of each page size from the smallest to the largest collection beside the table\'s and by id', () => {
    const text = listScaling(measurements().list)!;
    assert.match(text, /From 1000 to 5000 records \(5×\)/);
    assert.match(text, /a page of 20 took 4× as long \(100 → 400 ms; the same records by id 1\.1×\)/);
    assert.match(text, /a page of 100 took 4× as long \(120 → 480 ms; the same records by id 1\.1×\)/);
  });

  it('says nothing with a single collection size', () => {
    assert.equal(listScaling(measurements().list.filter((l) => l.records === 1000)), undefined);
  });

  it('puts the cipher alone, the scaling and the settings under the table', () => {
    const notes = atRestNotes(measurements(), { version: 'v1.24.2', settings: { BENCH_AT_REST_ROUNDS: 5 }, busyRetries: 2, discarded: [] });
    assert.ok(notes.some((n) => n.includes('small records: seal 20 [20–20] µs, open 10 [10–10] µs')));
    assert.ok(notes.some((n) => n.startsWith('FerretDB v1 (SQLite) filters and sorts')));
    assert.ok(notes.some((n) => n.includes('BENCH_AT_REST_ROUNDS=5') && n.includes('(at most 2): none')));
    const one = atRestNotes(measurements({ list: measurements().list.filter((l) => l.records === 1000) }), { version: 'v1.24.2', settings: {}, busyRetries: 2, discarded: ['erase round 2 (busy)'] });
    assert.equal(one.length, notes.length - 1);
    assert.ok(one.some((n) => n.includes('(at most 2): erase round 2 (busy)')));
  });
});
