import assert from 'node:assert/strict';
import { check, chainBrokenBy } from '../../../security/jepsen/checker';
import { canonicalJson, classify, opOutcome, type Attempt, type History, type Op, type StoredDoc } from '../../../security/jepsen/history';

const PREFIX = 'jep-t-';
const OPTS = { livenessMs: 5000, canaryPrefix: PREFIX };

const ok = (id: string, start = 1000): Attempt => ({ start, end: start + 10, status: 201, id, outcome: 'ok' });
const timeout = (start = 1000): Attempt => ({ start, end: start + 15_000, status: 0, network: 'client timeout', outcome: 'info' });
const deadline = (start = 1000): Attempt => ({ start, end: start + 10_000, status: 504, code: 'deadline_exceeded', stored: 'unknown', outcome: 'info' });
const noTunnel = (start = 1000): Attempt => ({ start, end: start + 5, status: 503, code: 'no_tunnel', stored: 'no', outcome: 'fail' });

function op(n: number, attempts: Attempt[], extra: Partial<Op> = {}): Op {
  return { canary: `${PREFIX}${n}`, client: `c${n % 4}`, collection: 'notes', contentHash: `h${n}`, attempts, reads: [], kind: 'load', ...extra };
}
const doc = (o: Op, id: string, extra: Partial<StoredDoc> = {}): StoredDoc => ({ id, collection: o.collection, canary: o.canary, contentHash: o.contentHash, ...extra });

/**
 * A history where everything holds: keyed and unkeyed oks stored under their ids and read
 * back, a definite failure not stored, an indeterminate one stored once, an unkeyed retry
 * stored twice (reported, not a violation), and a heal followed by a 201 within 5 s.
 */
function goodRun(): { history: History; stored: StoredDoc[] } {
  const keyedOk = op(1, [ok('id-1')], { key: 'k1', reads: [{ id: 'id-1', at: 1020, result: 'found' }] });
  const unkeyedOk = op(2, [ok('id-2')], { reads: [{ id: 'id-2', at: 1020, result: 'found' }] });
  const failed = op(3, [noTunnel()], { key: 'k3' });
  const keyedRetried = op(4, [deadline(), ok('id-4', 12_000)], { key: 'k4', reads: [{ id: 'id-4', at: 12_020, result: 'unverified', detail: '503' }] });
  const unkeyedRetried = op(5, [timeout(), ok('id-5b', 17_000)]);
  const unknown = op(6, [deadline()], { key: 'k6' });
  const probe = op(7, [ok('id-7', 31_000)], { key: 'k7', kind: 'probe' });
  const history: History = {
    ops: [keyedOk, unkeyedOk, failed, keyedRetried, unkeyedRetried, unknown, probe],
    faults: [{ name: 'core SIGKILL', scope: 'chain', start: 20_000, healed: 30_000, notes: [], problems: [] }],
    probes: [{ fault: 'core SIGKILL', healed: 30_000, firstOk: 31_010, attempts: 1, canaries: [probe.canary] }],
    brokers: ['broker', 'broker2'],
    observations: [],
  };
  const stored = [
    doc(keyedOk, 'id-1'),
    doc(unkeyedOk, 'id-2'),
    doc(keyedRetried, 'id-4'),
    doc(unkeyedRetried, 'id-5a'),
    doc(unkeyedRetried, 'id-5b'),
    doc(unknown, 'id-6'),
    doc(probe, 'id-7'),
    // Not this run's: ignored.
    { id: 'other', collection: 'notes', canary: 'someone-else', contentHash: 'x' },
  ];
  return { history, stored };
}

describe('Jepsen-style checker', () => {
  it('passes a history where every ok is stored, no failure is, and liveness holds, and counts what it saw', () => {
    const { history, stored } = goodRun();
    const r = check(history, stored, OPTS);
    assert.deepEqual(r.violations, []);
    assert.equal(r.valid, true);
    assert.equal(r.figures.ops, 7);
    assert.deepEqual([r.figures.ok, r.figures.fail, r.figures.info], [5, 1, 1]);
    assert.equal(r.figures.unkeyedDuplicates, 1);
    assert.equal(r.figures.keyedDuplicates, 0);
    assert.deepEqual([r.figures.infoStored, r.figures.infoNotStored], [1, 0]);
    assert.deepEqual(r.figures.reads, { found: 2, missing: 0, different: 0, unverified: 1 });
    assert.deepEqual(r.figures.liveness, [{ fault: 'core SIGKILL', ms: 1010, judged: true, overlappedBy: [] }]);
    assert.deepEqual(r.figures.answers, { load: { '201': 4, '503 no_tunnel': 1, '504 deadline_exceeded': 2, '0 client timeout': 1 }, probe: { '201': 1 } });
  });

  it('fails when an acknowledged write is missing from the database', () => {
    const { history, stored } = goodRun();
    const r = check(history, stored.filter((d) => d.id !== 'id-4'), OPTS);
    assert.equal(r.valid, false);
    assert.equal(r.figures.lost, 1);
    assert.equal(r.violations.length, 1);
    assert.match(r.violations[0]!, /^lost: jep-t-4 .*id id-4/);
  });

  it('fails when an acknowledged id holds other content', () => {
    const { history, stored } = goodRun();
    const r = check(history, stored.map((d) => (d.id === 'id-2' ? { ...d, contentHash: 'tampered' } : d)), OPTS);
    assert.equal(r.figures.wrongContent, 1);
    assert.match(r.violations.join('\n'), /^wrong content: jep-t-2 /);
  });

  it('fails when a write answered only with definite failures is stored', () => {
    const { history, stored } = goodRun();
    const failed = history.ops.find((o) => o.canary === `${PREFIX}3`)!;
    const r = check(history, [...stored, doc(failed, 'id-3')], OPTS);
    assert.equal(r.valid, false);
    assert.equal(r.figures.failStored, 1);
    assert.deepEqual(r.violations.map((v) => v.split(':')[0]), ['fail present']);
  });

  it('fails when a keyed write is stored twice, and when one key is answered with two ids', () => {
    const { history, stored } = goodRun();
    const keyed = history.ops.find((o) => o.canary === `${PREFIX}6`)!;
    const twice = check(history, [...stored, doc(keyed, 'id-6b')], OPTS);
    assert.equal(twice.figures.keyedDuplicates, 1);
    assert.match(twice.violations.join('\n'), /^keyed duplicate: jep-t-6 .*id-6, id-6b/);

    const twoIds = goodRun();
    twoIds.history.ops[0]!.attempts.push(ok('id-1-again', 2000));
    twoIds.stored.push(doc(twoIds.history.ops[0]!, 'id-1-again'));
    const r = check(twoIds.history, twoIds.stored, OPTS);
    assert.equal(r.figures.keyedDuplicates, 1);
    assert.equal(r.valid, false);
  });

  it('fails when no write succeeds within 5 s of a heal that left the chain whole', () => {
    const { history, stored } = goodRun();
    history.probes[0]!.firstOk = 30_000 + 5001;
    const late = check(history, stored, OPTS);
    assert.deepEqual(late.violations, ['liveness: after core SIGKILL, the first write succeeded only after 5001 ms; must be within 5000 ms']);
    delete history.probes[0]!.firstOk;
    assert.match(check(history, stored, OPTS).violations[0]!, /no write succeeded at all/);
  });

  it('does not judge a heal while another fault still breaks the chain, and says which', () => {
    const { history, stored } = goodRun();
    history.faults.push({ name: 'gateway SIGKILL', scope: 'chain', start: 25_000, healed: 40_000, notes: [], problems: [] });
    delete history.probes[0]!.firstOk;
    const r = check(history, stored, OPTS);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.figures.liveness, [{ fault: 'core SIGKILL', ms: undefined, judged: false, overlappedBy: ['gateway SIGKILL'] }]);
  });

  it('counts the chain broken only when every broker is out, not by one broker or a clock offset', () => {
    const h = { brokers: ['broker', 'broker2'], faults: [
      { name: 'broker SIGKILL', scope: 'broker:broker', start: 0, healed: 100, notes: [], problems: [] },
      { name: 'broker2 clock +60 s', scope: 'clock:broker2', start: 0, notes: [], problems: [] },
    ] };
    assert.deepEqual(chainBrokenBy(h, 50), []);
    h.faults.push({ name: 'broker2 blackhole', scope: 'broker:broker2', start: 40, healed: 60, notes: [], problems: [] });
    assert.deepEqual(chainBrokenBy(h, 50), ['broker SIGKILL', 'broker2 blackhole']);
    // Healed at 60: from then on it no longer counts.
    assert.deepEqual(chainBrokenBy(h, 60), []);
    assert.deepEqual(chainBrokenBy(h, 100), []);
  });

  it('fails on a problem the nemesis saw in the system\'s own conduct and on a restart no fault caused', () => {
    const { history, stored } = goodRun();
    history.faults[0]!.problems.push('exit 137 after 10.1 s: killed at the end of the grace period, not drained');
    history.observations.push('gateway died 2 times (exit codes 137, 137), the nemesis caused 1');
    assert.deepEqual(check(history, stored, OPTS).violations, [
      'nemesis core SIGKILL: exit 137 after 10.1 s: killed at the end of the grace period, not drained',
      'observed: gateway died 2 times (exit codes 137, 137), the nemesis caused 1',
    ]);
  });

  it('fails when a GET right after a 201 does not find the record, and on a stored canary nobody sent', () => {
    const { history, stored } = goodRun();
    history.ops[1]!.reads = [{ id: 'id-2', at: 1020, result: 'missing', detail: '404 not_found' }];
    const r = check(history, [...stored, { id: 'ghost', collection: 'notes', canary: `${PREFIX}999`, contentHash: 'x' }], OPTS);
    assert.deepEqual(r.violations.map((v) => v.split(':')[0]).sort(), ['read after write', 'stray']);
    assert.equal(r.figures.strays, 1);
  });
});

describe('Jepsen-style history: how a client reads an answer', () => {
  it('reads 201 with an id as ok, 4xx and 5xx "stored":"no" and a refused connection as fail', () => {
    assert.equal(classify({ status: 201, json: { id: 'a' } }).outcome, 'ok');
    assert.equal(classify({ status: 409, json: { error: { code: 'conflict', stored: 'no' } } }).outcome, 'fail');
    assert.equal(classify({ status: 429, json: undefined }).outcome, 'fail');
    assert.deepEqual(classify({ status: 503, json: { error: { code: 'no_tunnel', stored: 'no' } } }), { status: 503, code: 'no_tunnel', stored: 'no', outcome: 'fail' });
    assert.equal(classify({ networkCode: 'ECONNREFUSED' }).outcome, 'fail');
  });

  it('reads timeouts, resets, "stored":"unknown", 5xx without the field and a 201 without an id as info', () => {
    assert.equal(classify({ status: 504, json: { error: { code: 'deadline_exceeded', stored: 'unknown' } } }).outcome, 'info');
    assert.equal(classify({ status: 502, json: undefined }).outcome, 'info');
    assert.equal(classify({ status: 503, json: { error: { code: 'unavailable' } } }).outcome, 'info');
    assert.equal(classify({ status: 201, json: {} }).outcome, 'info');
    assert.equal(classify({ networkCode: 'ECONNRESET' }).outcome, 'info');
    assert.equal(classify({ networkCode: 'client timeout' }).outcome, 'info');
  });

  it('gives an op ok if any attempt was, else info if any was, else fail', () => {
    assert.equal(opOutcome(op(1, [deadline(), noTunnel(), ok('x')])), 'ok');
    assert.equal(opOutcome(op(1, [deadline(), noTunnel()])), 'info');
    assert.equal(opOutcome(op(1, [noTunnel(), noTunnel()])), 'fail');
  });

  it('writes canonical JSON with keys sorted at every level', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: 'x' } }), '{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}');
  });
});
