import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries';
import { freePort } from './ports';
import { tempDir } from './tmp';
import { waitFor } from './wait';

/**
 * A real OCI registry for the release tests: Debian's docker-registry (distribution 2.8) on
 * a free 127.0.0.1 port, storing into a temp dir of its own, deletes enabled. It speaks plain
 * HTTP, which docker, cosign and trivy accept for a loopback registry without configuration
 * (oras is given --plain-http). Nothing but this process's own clients reach it.
 */
export class LocalRegistry {
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly cleanupDir: () => void,
    private readonly output: () => string,
  ) {}

  /** host:port, the first part of an image name in this registry. */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(): Promise<LocalRegistry> {
    const binary = requireBinary('docker-registry', process.env.NONSTOP_REGISTRY_BIN ?? '/usr/bin/docker-registry');
    const port = await freePort();
    const tmp = tempDir('nonstop-registry-');
    const config = join(tmp.dir, 'config.yml');
    writeFileSync(
      config,
      [
        'version: 0.1',
        'log: { level: warn }',
        `storage: { filesystem: { rootdirectory: ${join(tmp.dir, 'data')} }, delete: { enabled: true } }`,
        `http: { addr: "127.0.0.1:${port}", secret: "${port}-release-test" }`,
        '',
      ].join('\n'),
    );
    const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-8000)));
    child.stderr.on('data', (b: Buffer) => (output = (output + b.toString()).slice(-8000)));
    child.on('error', () => undefined);
    const registry = new LocalRegistry(port, child, tmp.cleanup, () => output);
    try {
      await waitFor(`docker-registry on ${registry.host}`, async () => {
        if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${output}`);
        const res = await fetch(`http://${registry.host}/v2/`).catch(() => undefined);
        return res?.status === 200;
      });
    } catch (err) {
      await registry.stop();
      throw err;
    }
    return registry;
  }

  /** The tags a repository holds, as the registry lists them. */
  async tags(repository: string): Promise<string[]> {
    const res = await fetch(`http://${this.host}/v2/${repository}/tags/list`);
    if (res.status !== 200) throw new Error(`tags/list of ${repository}: HTTP ${res.status} ${await res.text()}`);
    return ((await res.json()) as { tags: string[] | null }).tags ?? [];
  }

  log(): string {
    return this.output();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      await once(this.child, 'exit');
    }
    this.cleanupDir();
  }
}
