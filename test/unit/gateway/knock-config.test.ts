import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadGatewayConfig } from '../../../services/gateway/config';
import { expectConfigError } from '../../support/config-error';
import { tempDir } from '../../support/tmp';

/** The gateway's knock settings as its configuration reads them: defaults, floor, own ports. */
describe('loadGatewayConfig: knock strength', () => {
  let tmp: ReturnType<typeof tempDir>;
  let base: NodeJS.ProcessEnv;

  beforeEach(() => {
    tmp = tempDir();
    const password = join(tmp.dir, 'queue.password');
    writeFileSync(password, 'a-queue-password\n');
    const secret = join(tmp.dir, 'knock.secret');
    writeFileSync(secret, 'a-knock-secret-of-32-bytes-or-so\n');
    base = { KNOCK_MODE: 'time', KNOCK_SECRET_FILE: secret, QUEUE_PASSWORD_FILE: password };
  });
  afterEach(() => tmp.cleanup());

  it('defaults to 8 knocks in 40000-40999, a budget of 10 attempts and one more per 6 s, and a replay record on the volume', () => {
    const { knock } = loadGatewayConfig(base);
    assert.equal(knock.spec.mode, 'time');
    if (knock.spec.mode !== 'time') return;
    assert.deepEqual([knock.spec.length, knock.spec.rangeStart, knock.spec.rangeEnd], [8, 40000, 40999]);
    assert.deepEqual(knock.budget, { attempts: 10, refillMs: 6000 });
    assert.equal(knock.replayFile, '/var/lib/nonstop/knock/replay.json');
  });

  it('refuses settings a guesser could open in fewer than 2^64 SYNs, on one line naming both variables', () => {
    for (const [length, range] of [
      ['7', '40000-40999'],
      ['4', '40000-40999'],
      ['2', '40000-40999'],
      ['8', '40000-40099'],
    ] as const) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base, KNOCK_LENGTH: length, KNOCK_PORT_RANGE: range }));
      assert.equal(err.problems.length, 1, err.message);
      assert.ok(!err.message.includes('\n'));
      assert.match(err.problems[0]!, new RegExp(`^KNOCK_LENGTH=${length} with KNOCK_PORT_RANGE="${range}": a guesser needs only about 2\\^\\d+\\.\\d SYNs .* the floor is 2\\^64`));
    }
    // Positive controls at the edge: a wider range makes up for a shorter sequence.
    for (const [length, range] of [
      ['8', '40000-40999'],
      ['7', '40000-44095'],
      ['6', '40000-56383'],
    ] as const) {
      assert.equal(loadGatewayConfig({ ...base, KNOCK_LENGTH: length, KNOCK_PORT_RANGE: range }).knock.spec.mode, 'time', `${length} in ${range}`);
    }
  });

  it("refuses a range that holds one of the gateway's own ports, naming it", () => {
    for (const [range, env, own] of [
      ['1-20000', {}, 'HTTP_PORT 80, HTTPS_PORT 443, SSH_PORT 2222, APP_PORT 8080, METRICS_PORT 9464'],
      ['40000-50000', { SSH_PORT: '45000' }, 'SSH_PORT 45000'],
      ['40000-50000', { HTTPS_PORT: '40443' }, 'HTTPS_PORT 40443'],
      ['40000-50000', { METRICS_PORT: '49999' }, 'METRICS_PORT 49999'],
    ] as const) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base, KNOCK_PORT_RANGE: range, ...env }));
      assert.deepEqual(err.problems, [`KNOCK_PORT_RANGE="${range}": overlaps the gateway's own ports (${own})`]);
    }
    assert.equal(loadGatewayConfig({ ...base, KNOCK_PORT_RANGE: '40000-50000', SSH_PORT: '50001' }).ssh.port, 50001);
  });

  it("refuses a static sequence that knocks on one of the gateway's own ports", () => {
    const err = expectConfigError(() => loadGatewayConfig({ ...base, KNOCK_MODE: 'static', KNOCK_SEQUENCE: '7000,443,9000' }));
    assert.deepEqual(err.problems, ['KNOCK_SEQUENCE="7000,443,9000": holds the gateway\'s own ports (HTTPS_PORT 443)']);
    assert.deepEqual(loadGatewayConfig({ ...base, KNOCK_MODE: 'static', KNOCK_SEQUENCE: '7000,8000,9000' }).knock.spec, { mode: 'static', ports: [7000, 8000, 9000] });
  });

  it('names the budget variables when they are not positive integers', () => {
    for (const name of ['KNOCK_SOURCE_BUDGET', 'KNOCK_SOURCE_REFILL_SECONDS']) {
      const err = expectConfigError(() => loadGatewayConfig({ ...base, [name]: '0' }));
      assert.equal(err.problems.length, 1, err.message);
      assert.match(err.problems[0]!, new RegExp(`^${name}="0": expected an integer`));
    }
    assert.deepEqual(loadGatewayConfig({ ...base, KNOCK_SOURCE_BUDGET: '3', KNOCK_SOURCE_REFILL_SECONDS: '60' }).knock.budget, { attempts: 3, refillMs: 60_000 });
  });
});
