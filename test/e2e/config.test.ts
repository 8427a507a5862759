import assert from 'node:assert/strict';
import { docker } from '../support/stack/docker';
import { testImages } from '../support/stack/fixture';
import { demux } from '../support/stack/stack';

/** Starts an image with one bad variable and returns its exit code and output. */
async function runWith(image: string, env: Record<string, string>): Promise<{ code: number; output: string }> {
  const d = docker();
  const c = await d.createContainer({ Image: image, Env: Object.entries(env).map(([k, v]) => `${k}=${v}`), HostConfig: { NetworkMode: 'none', CapDrop: ['ALL'], ReadonlyRootfs: true, Tmpfs: { '/run/nonstop': 'uid=10001,gid=10001' } } });
  try {
    await c.start();
    const res = (await c.wait()) as { StatusCode: number };
    const logs = demux(await c.logs({ stdout: true, stderr: true }));
    return { code: res.StatusCode, output: logs };
  } finally {
    await c.remove({ force: true, v: true });
  }
}

describe('configuration errors in the images', function () {
  this.timeout(600_000);

  const cases: [tier: 'gateway' | 'broker' | 'core', env: Record<string, string>, variable: string][] = [
    ['gateway', { SSH_PORT: 'abc' }, 'SSH_PORT'],
    ['gateway', { KNOCK_MODE: 'static', KNOCK_SEQUENCE: '7000,7000,8000' }, 'KNOCK_SEQUENCE'],
    // Below the guessing floor, and a range over the gateway's own ports (any file of 16+ bytes stands in for the secret).
    ['gateway', { KNOCK_MODE: 'time', KNOCK_SECRET_FILE: '/etc/os-release', KNOCK_LENGTH: '4' }, 'KNOCK_LENGTH'],
    ['gateway', { KNOCK_MODE: 'time', KNOCK_SECRET_FILE: '/etc/os-release', KNOCK_PORT_RANGE: '1-20000' }, 'KNOCK_PORT_RANGE'],
    ['broker', { WORKER_CONCURRENCY: '0' }, 'WORKER_CONCURRENCY'],
    ['broker', { CORE_URL: 'http://core:8443' }, 'CORE_URL'],
    ['core', { DB_ENGINE: 'postgres' }, 'DB_ENGINE'],
    ['core', { CORE_PORT: '70000' }, 'CORE_PORT'],
    // Any readable file stands in for the TLS files, which are read (not parsed) before the keys.
    ['core', { TLS_CERT_FILE: '/etc/os-release', TLS_KEY_FILE: '/etc/os-release', CORE_DATA_KEYS_FILE: '/etc/os-release' }, 'CORE_DATA_KEYS_FILE'],
  ];

  for (const [tier, env, variable] of cases) {
    it(`${tier} exits 2 with one line naming ${variable} when it is wrong`, async () => {
      const images = await testImages();
      const { code, output } = await runWith(images[tier], env);
      assert.equal(code, 2, output);
      const lines = output.trim().split('\n');
      assert.equal(lines.length, 1, output);
      assert.match(lines[0]!, new RegExp(`^${tier}: config error: .*${variable}=`));
    });
  }
});
