import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { claimTimingProblem, DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS, loadBrokerConfig, parseGatewaysFile } from '../../../services/broker/config';
import { ConfigError } from '../../../services/common/errors/config-error';
import { DEFAULT_REQUEST_TIMEOUT_MS } from '../../../services/common/queue/timing';
import { expectConfigError } from '../../support/config-error';
import { tempDir } from '../../support/tmp';

const PATH = '/etc/nonstop/broker/gateways.json';
const FINGERPRINT = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';
const HASH = 'ab'.repeat(32);

function gateway(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'gw-1',
    host: 'gateway.example',
    hostKeyFingerprint: FINGERPRINT,
    queuePasswordSha256: HASH,
    knock: { mode: 'static', ports: [7000, 8000, 9000] },
    ...overrides,
  };
}

const file = (...gateways: Record<string, unknown>[]): string => JSON.stringify({ gateways });

function configError(text: string): ConfigError {
  const err = expectConfigError(() => parseGatewaysFile(PATH, text));
  for (const p of err.problems) assert.match(p, /BROKER_GATEWAYS_FILE/);
  return err;
}

describe('parseGatewaysFile', () => {
  let tmp: ReturnType<typeof tempDir>;
  let secretFile: string;
  beforeEach(() => {
    tmp = tempDir();
    secretFile = join(tmp.dir, 'knock.secret');
    writeFileSync(secretFile, 'the-knock-secret\n');
  });
  afterEach(() => tmp.cleanup());

  it('reads a static-knock gateway and fills in the defaults', () => {
    assert.deepEqual(parseGatewaysFile(PATH, file(gateway())), [
      {
        id: 'gw-1',
        host: 'gateway.example',
        sshPort: 2222,
        httpsPort: 443,
        hostKeyFingerprints: [FINGERPRINT],
        queueUsername: 'gateway-gw-1',
        queuePasswordSha256: [HASH],
        knock: { mode: 'static', ports: [7000, 8000, 9000] },
      },
    ]);
  });

  it('reads a time-knock gateway with its secret from the file, trimmed', () => {
    const [target] = parseGatewaysFile(
      PATH,
      file(gateway({ sshPort: 2200, queueUsername: 'gw_user', knock: { mode: 'time', secretFile, length: 5, portRange: '41000-41499', periodSeconds: 60 } })),
    );
    assert.ok(target);
    assert.equal(target.sshPort, 2200);
    assert.equal(target.queueUsername, 'gw_user');
    assert.deepEqual(target.knock, { mode: 'time', secret: Buffer.from('the-knock-secret'), secretFile, length: 5, rangeStart: 41000, rangeEnd: 41499, periodMs: 60_000 });
  });

  it('applies the time-knock defaults', () => {
    const [target] = parseGatewaysFile(PATH, file(gateway({ knock: { mode: 'time', secretFile } })));
    assert.deepEqual(target?.knock, { mode: 'time', secret: Buffer.from('the-knock-secret'), secretFile, length: 8, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 });
  });

  it('reads several gateways in order', () => {
    const got = parseGatewaysFile(PATH, file(gateway(), gateway({ id: 'gw-2', knock: { mode: 'time', secretFile } })));
    assert.deepEqual(
      got.map((g) => [g.id, g.knock.mode]),
      [
        ['gw-1', 'static'],
        ['gw-2', 'time'],
      ],
    );
  });

  it('refuses text that is not JSON', () => {
    const err = configError('{"gateways": [');
    assert.equal(err.message, `BROKER_GATEWAYS_FILE=${JSON.stringify(PATH)}: not valid JSON`);
  });

  it('refuses a file without gateways', () => {
    assert.match(configError('{"gateways":[]}').message, /gateways/);
    assert.match(configError('{}').message, /gateways/);
    configError('[]');
  });

  it('refuses the same gateway id twice', () => {
    const err = configError(file(gateway(), gateway({ host: 'other.example' })));
    assert.match(err.message, /gateways\.1\.id gw-1 appears twice/);
  });

  it('refuses a queue username that is reserved for the broker or taken by another gateway', () => {
    for (const queueUsername of ['default', 'broker', 'broker-admin']) {
      const err = configError(file(gateway({ queueUsername })));
      assert.match(err.message, new RegExp(`gateways\\.0\\.queueUsername ${queueUsername} is reserved or used by another gateway`));
    }
    const err = configError(file(gateway({ queueUsername: 'gateway-gw-2' }), gateway({ id: 'gw-2' })));
    assert.match(err.message, /gateways\.1\.queueUsername gateway-gw-2 is reserved or used by another gateway/);
    assert.equal(parseGatewaysFile(PATH, file(gateway({ queueUsername: 'shared-looking' }), gateway({ id: 'gw-2' }))).length, 2);
  });

  it('refuses a host key fingerprint that is not an OpenSSH SHA256 fingerprint', () => {
    for (const fp of ['MD5:aa:bb', 'SHA256:short', `${FINGERPRINT}=`, FINGERPRINT.slice(7), 'AA:BB:CC']) {
      const err = configError(file(gateway({ hostKeyFingerprint: fp })));
      assert.match(err.message, /gateways\.0\.hostKeyFingerprint: expected an OpenSSH SHA256:\.\.\. fingerprint/, fp);
    }
  });

  it('refuses a password hash that is not 64 lowercase hex digits', () => {
    for (const h of ['ab'.repeat(31), HASH.toUpperCase(), 'plaintext-password', `${HASH}0`]) {
      const err = configError(file(gateway({ queuePasswordSha256: h })));
      assert.match(err.message, /gateways\.0\.queuePasswordSha256: expected 64 lowercase hex digits/, h);
    }
  });

  it('reads a list of two password hashes (a queue-password rotation) as both, in order', () => {
    const other = 'cd'.repeat(32);
    const [target] = parseGatewaysFile(PATH, file(gateway({ queuePasswordSha256: [other, HASH] })));
    assert.deepEqual(target!.queuePasswordSha256, [other, HASH]);
  });

  it('refuses an empty list of password hashes, more than two, or a bad hash in a list', () => {
    for (const list of [[], [HASH, HASH, HASH], [HASH, 'plaintext-password']]) {
      const err = configError(file(gateway({ queuePasswordSha256: list })));
      assert.match(err.message, /gateways\.0\.queuePasswordSha256/, JSON.stringify(list));
    }
  });

  it('refuses unknown fields at every level', () => {
    assert.match(configError(file(gateway({ password: 'x' }))).message, /password/);
    assert.match(configError(JSON.stringify({ gateways: [gateway()], extra: 1 })).message, /extra/);
    assert.match(configError(file(gateway({ knock: { mode: 'static', ports: [7000, 8000], secret: 'x' } }))).message, /secret/);
  });

  it('refuses bad gateway ids, ports and knock modes', () => {
    configError(file(gateway({ id: 'GW 1' })));
    configError(file(gateway({ sshPort: 70000 })));
    configError(file(gateway({ knock: { mode: 'udp', ports: [1, 2] } })));
    configError(file(gateway({ knock: { mode: 'static', ports: [7000, 0] } })));
  });

  it('refuses a static sequence with a port repeated in consecutive steps', () => {
    const err = configError(file(gateway({ knock: { mode: 'static', ports: [7000, 8000, 8000] } })));
    assert.match(err.message, /gateways\.0\.knock\.ports: port 8000 repeats at step 3/);
  });

  it('refuses a static sequence of one port', () => {
    configError(file(gateway({ knock: { mode: 'static', ports: [7000] } })));
  });

  it('refuses a time-knock port range too small for the length or outside 1-65535', () => {
    for (const portRange of ['40000-40006', '40010-40000', '0-100', '65000-65536', '99999-99999']) {
      const err = configError(file(gateway({ knock: { mode: 'time', secretFile, length: 4, portRange } })));
      assert.match(err.message, /gateways\.0\.knock\.portRange: too small or out of 1-65535/, portRange);
    }
    assert.equal(parseGatewaysFile(PATH, file(gateway({ knock: { mode: 'time', secretFile, length: 4, portRange: '40000-40007' } }))).length, 1);
  });

  it('refuses a time-knock secret file that is missing or empty, naming the gateway', () => {
    const missing = join(tmp.dir, 'absent');
    assert.match(configError(file(gateway({ knock: { mode: 'time', secretFile: missing } }))).message, /gateways\.0\.knock\.secretFile=.*cannot read \(ENOENT\)/);
    const empty = join(tmp.dir, 'empty');
    writeFileSync(empty, '\n');
    assert.match(configError(file(gateway({ knock: { mode: 'time', secretFile: empty } }))).message, /gateways\.0\.knock\.secretFile=.*file is empty/);
  });

  it('refuses a relative secret file path', () => {
    configError(file(gateway({ knock: { mode: 'time', secretFile: 'knock.secret' } })));
  });

  it('reports every problem of the file at once', () => {
    const err = configError(file(gateway({ knock: { mode: 'static', ports: [1, 1] } }), gateway({ id: 'gw-2', knock: { mode: 'static', ports: [5, 5] } })));
    assert.equal(err.problems.length, 2);
    assert.match(err.problems[0]!, /gateways\.0\.knock\.ports/);
    assert.match(err.problems[1]!, /gateways\.1\.knock\.ports/);
  });
});

describe('claim timing', () => {
  it('accepts the default claim settings, which fail over within the default request deadline', () => {
    assert.equal(claimTimingProblem(DEFAULT_CLAIM_IDLE_MS, DEFAULT_CLAIM_INTERVAL_MS), undefined);
    assert.ok(DEFAULT_CLAIM_IDLE_MS + DEFAULT_CLAIM_INTERVAL_MS < DEFAULT_REQUEST_TIMEOUT_MS / 2);
  });

  it('refuses CLAIM_IDLE_MS + CLAIM_INTERVAL_MS at or past the request deadline, and accepts just under it', () => {
    const idle = DEFAULT_REQUEST_TIMEOUT_MS - 1000;
    assert.equal(claimTimingProblem(idle - 1, 1000), undefined);
    assert.match(claimTimingProblem(idle, 1000) ?? '', new RegExp(`^CLAIM_IDLE_MS=${idle} \\+ CLAIM_INTERVAL_MS=1000: must add up to less than`));
    const err = expectConfigError(() => loadBrokerConfig({ CLAIM_IDLE_MS: String(idle), CLAIM_INTERVAL_MS: '1000' }));
    assert.deepEqual(err.problems, [claimTimingProblem(idle, 1000)]);
  });
});
