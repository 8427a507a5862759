import { opOutcome, type History, type Op, type StoredDoc } from './history';

/**
 * Judges a History against what core's database holds. Pure: no I/O, no clock; the same
 * inputs give the same verdict, so hand-made histories test it (test/unit/security/jepsen/).
 *
 * What must hold:
 * - every ok (201) is stored under the id the client was given, with exactly its content;
 * - nothing answered only with definite failures is stored;
 * - no Idempotency-Key is stored twice or answered with two ids;
 * - a GET right after a 201 finds the record (404 or other content is a violation; a GET
 *   that got no definite answer during a fault is counted as unverified);
 * - liveness: after each heal that leaves the chain whole (no other fault taking away core,
 *   the gateway or every broker at that moment), a fresh write gets a 201 within
 *   `livenessMs`; heals overlapped by such a fault are reported, not judged;
 * - nothing is stored with a canary no op sent;
 * - what the nemesis saw of the system's own conduct holds (Fault.problems: a graceful stop
 *   that ran into Docker's kill, for one; History.observations: a container that restarted
 *   although no fault killed it).
 * Duplicates among unkeyed writes (a client retried after an indeterminate answer, with no
 * key to tie the copies together) are counted and reported, not a violation.
 */
export interface LivenessFigure {
  fault: string;
  /** ms from heal to the first 201; undefined when none came. */
  ms: number | undefined;
  judged: boolean;
  /** The faults still active at the heal that kept the chain broken (when not judged). */
  overlappedBy: string[];
}

export interface Figures {
  ops: number;
  ok: number;
  fail: number;
  info: number;
  attempts: number;
  keyedOps: number;
  unkeyedOps: number;
  /** ok ops whose 201 id is not stored. */
  lost: number;
  /** ok ops stored under their id with other content (or another op's canary). */
  wrongContent: number;
  /** fail ops found stored. */
  failStored: number;
  /** Keyed ops stored more than once or answered with more than one id. */
  keyedDuplicates: number;
  /** Extra copies of unkeyed ops (stored n times counts n - 1). */
  unkeyedDuplicates: number;
  /** info ops that turned out stored / not stored. */
  infoStored: number;
  infoNotStored: number;
  /** Documents with this run's canary prefix that no op sent. */
  strays: number;
  reads: { found: number; missing: number; different: number; unverified: number };
  liveness: LivenessFigure[];
  /** Every answer seen, "201", "503 no_tunnel", "0 ECONNRESET", with counts, by op kind (load, burst...). */
  answers: Record<string, Record<string, number>>;
}

export interface CheckResult {
  valid: boolean;
  violations: string[];
  figures: Figures;
}

export interface CheckOptions {
  /** A fresh write must succeed within this of each judged heal. */
  livenessMs: number;
  /** Only stored documents whose canary starts with this are this run's. */
  canaryPrefix: string;
}

function describeOp(op: Op): string {
  return `${op.canary} (${op.collection}, client ${op.client}, ${op.key ? `key ${op.key}` : 'no key'})`;
}

function answersOf(op: Op): string {
  return op.attempts.map((a) => (a.status === 0 ? `0 ${a.network ?? ''}` : `${a.status}${a.code ? ` ${a.code}` : ''}${a.id ? ` ${a.id}` : ''}`)).join(', ');
}

/**
 * The faults that broke the chain at `t` (empty when it was whole): any active fault on core
 * or the gateway, or faults that had every broker out at once. A fault healed at `t` is
 * no longer active at `t`.
 */
export function chainBrokenBy(history: Pick<History, 'faults' | 'brokers'>, t: number): string[] {
  const active = history.faults.filter((f) => f.start <= t && (f.healed === undefined || f.healed > t));
  const chain = active.filter((f) => f.scope === 'chain');
  if (chain.length > 0) return chain.map((f) => f.name);
  const brokerFaults = active.filter((f) => f.scope.startsWith('broker:'));
  const down = new Set(brokerFaults.map((f) => f.scope.slice('broker:'.length)));
  if (history.brokers.length > 0 && history.brokers.every((b) => down.has(b))) return brokerFaults.map((f) => f.name);
  return [];
}

export function check(history: History, stored: StoredDoc[], opts: CheckOptions): CheckResult {
  const violations: string[] = [];
  const mine = stored.filter((d) => d.canary.startsWith(opts.canaryPrefix));
  const byCanary = new Map<string, StoredDoc[]>();
  for (const d of mine) byCanary.set(d.canary, [...(byCanary.get(d.canary) ?? []), d]);
  const byId = new Map<string, StoredDoc>(mine.map((d) => [d.id, d]));
  const sent = new Set(history.ops.map((o) => o.canary));

  const f: Figures = {
    ops: history.ops.length,
    ok: 0,
    fail: 0,
    info: 0,
    attempts: 0,
    keyedOps: 0,
    unkeyedOps: 0,
    lost: 0,
    wrongContent: 0,
    failStored: 0,
    keyedDuplicates: 0,
    unkeyedDuplicates: 0,
    infoStored: 0,
    infoNotStored: 0,
    strays: 0,
    reads: { found: 0, missing: 0, different: 0, unverified: 0 },
    liveness: [],
    answers: {},
  };

  for (const op of history.ops) {
    const outcome = opOutcome(op);
    f[outcome] += 1;
    f.attempts += op.attempts.length;
    if (op.key) f.keyedOps += 1;
    else f.unkeyedOps += 1;
    for (const a of op.attempts) {
      const k = a.status === 0 ? `0 ${a.network ?? ''}` : `${a.status}${a.code ? ` ${a.code}` : ''}`;
      const byKind = (f.answers[op.kind] ??= {});
      byKind[k] = (byKind[k] ?? 0) + 1;
    }
    const docs = byCanary.get(op.canary) ?? [];
    const okIds = [...new Set(op.attempts.filter((a) => a.outcome === 'ok' && a.id !== undefined).map((a) => a.id!))];

    if (outcome === 'ok') {
      let lost = false;
      let wrong = false;
      for (const id of okIds) {
        const doc = byId.get(id);
        if (!doc) {
          lost = true;
          violations.push(`lost: ${describeOp(op)} was answered 201 with id ${id}, and core holds no record with that id (answers: ${answersOf(op)})`);
        } else if (doc.canary !== op.canary || doc.contentHash !== op.contentHash || doc.collection !== op.collection) {
          wrong = true;
          violations.push(`wrong content: ${describeOp(op)} was answered 201 with id ${id}; core holds under that id ${doc.canary} in ${doc.collection} with content ${doc.contentHash.slice(0, 12)}, not ${op.contentHash.slice(0, 12)}`);
        }
      }
      if (lost) f.lost += 1;
      if (wrong) f.wrongContent += 1;
    } else if (outcome === 'fail') {
      if (docs.length > 0) {
        f.failStored += 1;
        violations.push(`fail present: ${describeOp(op)} got only definite failures (${answersOf(op)}), yet core holds it as ${docs.map((d) => d.id).join(', ')}`);
      }
    } else if (docs.length > 0) f.infoStored += 1;
    else f.infoNotStored += 1;

    if (op.key) {
      const ids = new Set([...okIds, ...docs.map((d) => d.id)]);
      if (ids.size > 1) {
        f.keyedDuplicates += 1;
        violations.push(`keyed duplicate: ${describeOp(op)} has ${ids.size} records or ids (${[...ids].join(', ')}; stored ${docs.length}; answers: ${answersOf(op)})`);
      }
    } else if (docs.length > 1) f.unkeyedDuplicates += docs.length - 1;

    for (const r of op.reads) {
      f.reads[r.result] += 1;
      if (r.result === 'missing' || r.result === 'different') violations.push(`read after write: ${describeOp(op)} id ${r.id} was ${r.result} on the GET after its 201${r.detail ? ` (${r.detail})` : ''}`);
    }
  }

  for (const [canary, docs] of byCanary) {
    if (sent.has(canary)) continue;
    f.strays += docs.length;
    violations.push(`stray: core holds ${docs.map((d) => d.id).join(', ')} with canary ${canary}, which no op sent`);
  }

  for (const fault of history.faults) for (const problem of fault.problems) violations.push(`nemesis ${fault.name}: ${problem}`);
  for (const o of history.observations) violations.push(`observed: ${o}`);

  for (const p of history.probes) {
    const overlappedBy = chainBrokenBy(history, p.healed);
    const ms = p.firstOk === undefined ? undefined : p.firstOk - p.healed;
    const judged = overlappedBy.length === 0;
    f.liveness.push({ fault: p.fault, ms, judged, overlappedBy });
    if (judged && (ms === undefined || ms > opts.livenessMs)) {
      violations.push(`liveness: after ${p.fault}, ${ms === undefined ? `no write succeeded at all (${p.attempts} attempts)` : `the first write succeeded only after ${ms} ms`}; must be within ${opts.livenessMs} ms`);
    }
  }

  return { valid: violations.length === 0, violations, figures: f };
}

/** The figures and violations as one block of text for the test's output. */
export function formatSummary(result: CheckResult, extra: Record<string, string | number> = {}, maxViolations = 40): string {
  const f = result.figures;
  const lines = [
    '==================== Jepsen-style check ====================',
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
    `ops: ${f.ops} (keyed ${f.keyedOps}, unkeyed ${f.unkeyedOps}), attempts: ${f.attempts}`,
    `outcomes: ok ${f.ok}, fail ${f.fail}, info ${f.info} (info found stored ${f.infoStored}, not stored ${f.infoNotStored})`,
    `lost (ok not stored): ${f.lost}; wrong content: ${f.wrongContent}; fail stored: ${f.failStored}; strays: ${f.strays}`,
    `duplicates: keyed ${f.keyedDuplicates}, unkeyed ${f.unkeyedDuplicates} (extra copies, reported only)`,
    `reads after 201: found ${f.reads.found}, missing ${f.reads.missing}, different ${f.reads.different}, unverified ${f.reads.unverified}`,
    'liveness (heal -> first 201):',
    ...f.liveness.map((l) => `  ${l.fault}: ${l.ms === undefined ? 'none' : `${l.ms} ms`}${l.judged ? '' : ` (not judged: chain still broken by ${l.overlappedBy.join(', ')})`}`),
    'answers:',
    ...Object.entries(f.answers).map(([kind, answers]) => `  ${kind}: ${Object.entries(answers).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} x${n}`).join('; ')}`),
    `verdict: ${result.valid ? 'VALID' : `INVALID, ${result.violations.length} violations`}`,
    ...result.violations.slice(0, maxViolations).map((v) => `  - ${v}`),
    ...(result.violations.length > maxViolations ? [`  ... and ${result.violations.length - maxViolations} more`] : []),
    '=============================================================',
  ];
  return lines.join('\n');
}
