import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * A network namespace this test creates, joined to the host by a veth pair: an "outside
 * host" whose traffic reaches the host's published ports through routing and DNAT, as a
 * client on the internet would. Addresses come from a /30 of 10.203.0.0/16 chosen at
 * random; only the test's own namespace and veth use them.
 */
export class TestNamespace {
  readonly name: string;
  readonly hostIf: string;
  readonly nsIf: string;
  readonly hostAddress: string;
  readonly nsAddress: string;

  private constructor() {
    const id = randomBytes(3).toString('hex');
    this.name = `nst-${id}`;
    this.hostIf = `nsth${id}`;
    this.nsIf = `nstn${id}`;
    const b = randomBytes(2);
    const third = b[0]!;
    const fourth = (b[1]! & 0xfc) % 252;
    this.hostAddress = `10.203.${third}.${fourth + 1}`;
    this.nsAddress = `10.203.${third}.${fourth + 2}`;
  }

  static create(): TestNamespace {
    const ns = new TestNamespace();
    const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
    ip('netns', 'add', ns.name);
    try {
      ip('link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', ns.nsIf);
      ip('link', 'set', ns.nsIf, 'netns', ns.name);
      ip('addr', 'add', `${ns.hostAddress}/30`, 'dev', ns.hostIf);
      ip('link', 'set', ns.hostIf, 'up');
      ip('-n', ns.name, 'addr', 'add', `${ns.nsAddress}/30`, 'dev', ns.nsIf);
      ip('-n', ns.name, 'link', 'set', ns.nsIf, 'up');
      ip('-n', ns.name, 'link', 'set', 'lo', 'up');
      ip('-n', ns.name, 'route', 'add', 'default', 'via', ns.hostAddress);
    } catch (err) {
      ns.destroy();
      throw err;
    }
    return ns;
  }

  /** Runs a command inside the namespace. */
  run(cmd: string[], timeoutMs = 30_000): { status: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.name, ...cmd], { encoding: 'utf8', timeout: timeoutMs });
    return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  }

  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostIf], { stdio: 'ignore' });
  }
}
