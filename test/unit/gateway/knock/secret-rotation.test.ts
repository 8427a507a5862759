import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KnockSecretChooser } from '../../../../services/broker/knock/secrets';
import { ConfigError } from '../../../../services/common/errors/config-error';
import { knockSecretsFrom } from '../../../../services/common/knock/secrets';
import { timeCandidates, timeSequence, windowOf, type TimeSpec } from '../../../../services/common/knock/sequence';
import { KnockTracker, type KnockOutcome } from '../../../../services/gateway/knock/tracker';
import { silentLogger } from '../../../support/logger';

const OLD = Buffer.from('the-old-knock-secret');
const NEW = Buffer.from('the-new-knock-secret');
const BASE: TimeSpec = { mode: 'time', secret: NEW, length: 6, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 };
const T0 = 1_800_000_000_000;

function tracker(spec: TimeSpec): { t: KnockTracker; knock: (src: string, ports: readonly number[]) => KnockOutcome[] } {
  const t = new KnockTracker({ spec, stepTimeoutMs: 1000, sequenceTimeoutMs: 5000, maxSources: 100, now: () => T0 });
  let n = 0;
  const knock = (src: string, ports: readonly number[]): KnockOutcome[] => ports.map((dport) => t.onSyn({ src, dport, sport: 30000 + ++n, seq: n * 7919 }));
  return { t, knock };
}

const sequence = (secret: Buffer, nonce: number): number[] => timeSequence({ ...BASE, secret }, windowOf(BASE, T0), nonce);
const opened = (outcomes: KnockOutcome[]): boolean => outcomes.at(-1) === 'opened';

describe('knock secret rotation (time-based knocks)', () => {
  it('derives candidates from the previous secret as well during the overlap, and from the secret alone without one', () => {
    const alone = timeCandidates(BASE, 40010, T0).map((c) => c.ports.join());
    const both = timeCandidates({ ...BASE, previousSecret: OLD }, 40010, T0).map((c) => c.ports.join());
    assert.equal(alone.length, 3);
    assert.equal(both.length, 6);
    assert.ok(both.includes(sequence(OLD, 10).join()));
    assert.ok(!alone.includes(sequence(OLD, 10).join()));
  });

  it('opens for a sequence from either secret during the overlap; after retire only the new one opens (old refused, new from the same source as control)', () => {
    const { t, knock } = tracker({ ...BASE, secret: OLD });
    t.setSpec({ ...BASE, previousSecret: OLD });
    assert.ok(opened(knock('10.0.0.1', sequence(OLD, 1))), 'old secret during the overlap');
    assert.ok(opened(knock('10.0.0.1', sequence(NEW, 2))), 'new secret during the overlap');
    t.setSpec(BASE);
    assert.ok(!opened(knock('10.0.0.2', sequence(OLD, 3))), 'old secret after retire');
    assert.ok(opened(knock('10.0.0.2', sequence(NEW, 4))), 'new secret after retire');
  });

  it('forgets the candidates it computed from the old secret at retire: an old-secret knock on a first port seen during the overlap opens nothing after', () => {
    const { t, knock } = tracker({ ...BASE, previousSecret: OLD });
    // Two steps during the overlap: the candidates for this window and first port are computed (and kept for reuse).
    assert.deepEqual(knock('10.0.0.1', sequence(OLD, 30).slice(0, 2)), ['progress', 'progress']);
    t.setSpec(BASE);
    assert.ok(!opened(knock('10.0.0.2', sequence(OLD, 30))), 'an old-secret knock opened after retire');
    assert.ok(opened(knock('10.0.0.2', sequence(NEW, 31))), 'control: a new-secret knock from the same source');
  });

  it('refuses a (window, nonce) used with one secret when it comes again with the other: the overlap adds no replay', () => {
    const { knock } = tracker({ ...BASE, previousSecret: OLD });
    assert.ok(opened(knock('10.0.0.1', sequence(OLD, 7))));
    assert.equal(knock('10.0.0.9', sequence(NEW, 7)).at(-1), 'replay');
    assert.equal(knock('10.0.0.9', sequence(OLD, 7)).at(-1), 'replay');
  });

  it('tracks partial progress per source against both secrets: interleaved knocks from two sources, one per secret, both open', () => {
    const { knock } = tracker({ ...BASE, previousSecret: OLD });
    const a = sequence(OLD, 20);
    const b = sequence(NEW, 21);
    const out: Record<string, KnockOutcome[]> = { a: [], b: [] };
    for (let i = 0; i < a.length; i++) {
      out.a!.push(...knock('10.0.0.1', [a[i]!]));
      out.b!.push(...knock('10.0.0.2', [b[i]!]));
    }
    assert.ok(opened(out.a!) && opened(out.b!), JSON.stringify(out));
  });

  it('reads the secrets: too short a current secret is refused, a short or equal .previous adds nothing', () => {
    assert.deepEqual(knockSecretsFrom('V', '/k', ` ${NEW.toString()}\n`, `${OLD.toString()}\n`), { secret: NEW, previousSecret: OLD });
    assert.deepEqual(knockSecretsFrom('V', '/k', NEW.toString(), undefined), { secret: NEW });
    assert.deepEqual(knockSecretsFrom('V', '/k', NEW.toString(), NEW.toString()), { secret: NEW });
    assert.deepEqual(knockSecretsFrom('V', '/k', NEW.toString(), 'short'), { secret: NEW });
    assert.throws(() => knockSecretsFrom('V', '/k', 'short\n', OLD.toString()), ConfigError);
  });

  describe('the broker choosing the secret to knock with (KnockSecretChooser)', () => {
    let dir: string;
    let file: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'nonstop-knock-'));
      file = join(dir, 'knock-gw1.secret');
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    const derivedFrom = (spec: TimeSpec): Buffer => spec.secret;

    it('knocks with the new secret first, with the previous one after a knock that did not open, and back after another', () => {
      writeFileSync(file, NEW.toString());
      writeFileSync(`${file}.previous`, OLD.toString());
      const c = new KnockSecretChooser(silentLogger());
      const spec: TimeSpec = { ...BASE, secret: OLD, secretFile: file };
      const first = c.next(spec, 'gw1');
      assert.deepEqual([derivedFrom(first.spec as TimeSpec), first.previous], [NEW, false]);
      c.result(first.previous, false);
      const second = c.next(spec, 'gw1');
      assert.deepEqual([derivedFrom(second.spec as TimeSpec), second.previous], [OLD, true]);
      c.result(second.previous, false);
      assert.deepEqual(derivedFrom(c.next(spec, 'gw1').spec as TimeSpec), NEW);
    });

    it('knocks with the new secret only once .previous is gone (retired), even after a failure', () => {
      writeFileSync(file, NEW.toString());
      const c = new KnockSecretChooser(silentLogger());
      const spec: TimeSpec = { ...BASE, secret: OLD, secretFile: file };
      c.result(false, false);
      assert.deepEqual(derivedFrom(c.next(spec, 'gw1').spec as TimeSpec), NEW);
    });

    it('keeps knocking with the secret it had when the file becomes unusable', () => {
      writeFileSync(file, 'short');
      const c = new KnockSecretChooser(silentLogger());
      assert.deepEqual(derivedFrom(c.next({ ...BASE, secret: OLD, secretFile: file }, 'gw1').spec as TimeSpec), OLD);
    });
  });
});
