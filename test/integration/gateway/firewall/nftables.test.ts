import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Firewall, FirewallError } from '../../../../services/gateway/firewall/nftables';
import { SET_V4, SET_V6, type RulesetOptions } from '../../../../services/gateway/firewall/ruleset';
import { TestNamespace } from '../../../support/netns';
import { tempDir } from '../../../support/tmp';

/**
 * The Firewall class against the real nftables, inside a network namespace this test
 * creates (so the host's own ruleset is never touched). nft runs through a wrapper that
 * enters the namespace.
 */
describe('Firewall on real nftables in a test namespace', function () {
  this.timeout(60_000);
  let ns: TestNamespace;
  let tmp: ReturnType<typeof tempDir>;
  let nftWrapper: string;
  const options: RulesetOptions = { scope: 'namespace', publicPorts: [80, 443], sshPort: 2222, knockPorts: [[40000, 40999]], maxOpenWindows: 1024 };

  const elements = (set: string): string[] => {
    const json = JSON.parse(ns.run(['nft', '-j', 'list', 'set', 'inet', 'nonstop_gateway', set]).stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
    const elems = json.nftables.find((x) => x.set)?.set?.elem ?? [];
    return elems.map((e) => (typeof e === 'string' ? e : ((e as { elem: { val: string } }).elem.val)));
  };

  before(() => {
    ns = TestNamespace.create();
    tmp = tempDir();
    nftWrapper = join(tmp.dir, 'nft');
    writeFileSync(nftWrapper, `#!/bin/sh\nexec ip netns exec ${ns.name} nft "$@"\n`);
    chmodSync(nftWrapper, 0o755);
  });

  after(() => {
    ns?.destroy();
    tmp?.cleanup();
  });

  it('loads the table atomically, twice in a row, with policy drop on input', async () => {
    const fw = new Firewall(options, nftWrapper);
    await fw.load();
    await fw.load();
    const ruleset = ns.run(['nft', 'list', 'table', 'inet', 'nonstop_gateway']).stdout;
    assert.match(ruleset, /policy drop/);
    assert.equal((ruleset.match(/table inet nonstop_gateway/g) ?? []).length, 1);
  });

  it('opens windows for IPv4 and IPv6 addresses once each, with a timeout, however often they knock', async () => {
    const fw = new Firewall(options, nftWrapper);
    await fw.load();
    await fw.allow('10.203.7.9', 30_000);
    await fw.allow('10.203.7.9', 30_000);
    await fw.allow('fd00::7', 30_000);
    assert.deepEqual(elements(SET_V4), ['10.203.7.9']);
    assert.deepEqual(elements(SET_V6), ['fd00::7']);
    assert.match(ns.run(['nft', 'list', 'set', 'inet', 'nonstop_gateway', SET_V4]).stdout, /timeout|expires/);
    await fw.revoke('10.203.7.9');
    await fw.revoke('10.203.7.9');
    assert.deepEqual(elements(SET_V4), []);
  });

  it('batches a burst of changes into far fewer nft runs and applies every one', async () => {
    const fw = new Firewall(options, nftWrapper);
    await fw.load();
    const addresses = Array.from({ length: 300 }, (_, i) => `10.203.${i >> 8}.${i & 255}`);
    await Promise.all(addresses.map((a) => fw.allow(a, 60_000)));
    assert.equal(elements(SET_V4).length, 300);
    assert.equal(fw.changes, 300);
    assert.ok(fw.runs < 30, `${fw.runs} nft runs for 300 changes`);
  });

  it('removes its table on request and leaves nothing behind', async () => {
    const fw = new Firewall(options, nftWrapper);
    await fw.load();
    await fw.remove();
    assert.doesNotMatch(ns.run(['nft', 'list', 'tables']).stdout, /nonstop_gateway/);
  });

  it('fails closed with nft\'s reason when nftables cannot be used', async () => {
    const fw = new Firewall(options, join(tmp.dir, 'no-such-nft'));
    await assert.rejects(fw.load(), (err: unknown) => err instanceof FirewallError && err.code === 'firewall_unusable' && /cannot run/.test(err.message));
    const denied = join(tmp.dir, 'denied-nft');
    writeFileSync(denied, '#!/bin/sh\necho "Error: Could not process rule: Operation not permitted" >&2\nexit 1\n');
    chmodSync(denied, 0o755);
    await assert.rejects(new Firewall(options, denied).load(), /Operation not permitted/);
  });

  it('keeps the host ruleset untouched', () => {
    assert.doesNotMatch(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }), /nonstop_gateway/);
  });
});
