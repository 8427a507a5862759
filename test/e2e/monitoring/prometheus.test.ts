import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseKeyDates } from '../../../services/common/pki/key-dates';
import { REPO_ROOT } from '../../support/stack/build';
import { docker } from '../../support/stack/docker';
import { TEST_TAG, testImages } from '../../support/stack/fixture';
import { buildMonitoringImage, promQuery, type PromSample } from '../../support/stack/monitoring';
import { inContainer, tcpProbe } from '../../support/stack/net-probe';
import { Stack } from '../../support/stack/stack';
import { opensslNotAfter } from '../../support/openssl-dates';
import { waitFor } from '../../support/wait';

const JOBS = ['gateway', 'broker', 'core'];

/**
 * compose.yaml's `monitoring` profile, run as `docker compose --profile monitoring up` runs
 * it: Prometheus scrapes each tier on that tier's internal network, loads the alert rules,
 * and is reached from the host's loopback only, while the edge network still sees the
 * gateway answer on 80 and 443 alone.
 */
describe('the monitoring profile: Prometheus scraping the three tiers', function () {
  this.timeout(900_000);
  let stack: Stack;
  let base: string;

  before(async () => {
    const [images] = await Promise.all([testImages(), buildMonitoringImage(TEST_TAG)]);
    stack = await Stack.up(docker(), images, { tag: TEST_TAG, profiles: ['monitoring'] });
    await stack.waitHealthy('prometheus');
    base = `http://127.0.0.1:${await stack.hostPort('prometheus', 9090)}`;
    // The first scrapes follow DNS discovery's first refresh (10 s) and a scrape interval.
    await waitFor('every tier scraped up', async () => {
      const up = await promQuery(base, 'up');
      return JOBS.every((job) => up.some((s) => s.metric.job === job && s.value === 1)) ? up : undefined;
    }, 120_000, 1000);
  });

  after(async () => {
    await stack?.down();
  });

  it('reads up == 1 for exactly one target of each tier: gateway, broker and core', async () => {
    const up = await promQuery(base, 'up');
    for (const job of JOBS) {
      const targets = up.filter((s) => s.metric.job === job);
      assert.equal(targets.length, 1, `${job}: ${JSON.stringify(targets)}`);
      assert.equal(targets[0]!.value, 1, `${job} is not up: ${JSON.stringify(targets[0])}`);
    }
    assert.deepEqual(new Set(up.map((s) => s.metric.job)), new Set(JOBS), 'no target but the three tiers');
  });

  it('scrapes the gateway on its monitoring-network address, the broker and core on their private-network addresses', async () => {
    const up = await promQuery(base, 'up');
    const instance = (job: string): string => up.find((s) => s.metric.job === job)!.metric.instance!;
    assert.equal(instance('gateway'), `${await stack.ip('gateway', 'monitoring')}:9464`);
    assert.equal(instance('broker'), `${await stack.ip('broker', 'private')}:9464`);
    assert.equal(instance('core'), `${await stack.ip('core', 'private')}:9464`);
  });

  it("shows each tier's certificate expiry as the notAfter OpenSSL reads from the file that tier uses", async () => {
    const series = await promQuery(base, 'nonstop_certificate_expiry_timestamp_seconds');
    const files: [service: string, certificate: string, path: string][] = [
      ['gateway', 'server', '/var/lib/nonstop/tls/server.crt'],
      ['broker', 'client', '/etc/nonstop/broker/client.crt'],
      ['broker', 'ca', '/etc/nonstop/broker/ca.crt'],
      ['core', 'server', '/etc/nonstop/core/server.crt'],
      ['core', 'ca', '/etc/nonstop/core/ca.crt'],
    ];
    const seen = series.map((s) => `${s.metric.service}/${s.metric.certificate}`).sort();
    assert.deepEqual(seen, files.map(([service, certificate]) => `${service}/${certificate}`).sort());
    for (const [service, certificate, path] of files) {
      const pem = await stack.exec(service, ['cat', path]);
      assert.equal(pem.exitCode, 0, `${service}: cat ${path}: ${pem.stderr}`);
      const sample = series.find((s: PromSample) => s.metric.service === service && s.metric.certificate === certificate)!;
      assert.equal(sample.value, opensslNotAfter(pem.stdout), `${service} ${certificate} (${path})`);
    }
    const crl = await promQuery(base, 'nonstop_crl_expiry_timestamp_seconds');
    assert.deepEqual(crl.map((s) => [s.metric.service, s.metric.crl, s.value]), [['core', 'ca', Date.UTC(9999, 11, 31, 23, 59, 59) / 1000]]);
  });

  it("shows each key's expiry as the notAfter keygen wrote in the key-dates.json of the tier that holds it", async () => {
    const series = await promQuery(base, 'nonstop_key_expiry_timestamp_seconds');
    const manifests: [service: string, path: string][] = [
      ['gateway', '/var/lib/nonstop/key-dates.json'],
      ['broker', '/etc/nonstop/broker/key-dates.json'],
      ['core', '/etc/nonstop/core/key-dates.json'],
    ];
    const expected: string[] = [];
    for (const [service, path] of manifests) {
      const text = await stack.exec(service, ['cat', path]);
      assert.equal(text.exitCode, 0, `${service}: cat ${path}: ${text.stderr}`);
      for (const k of parseKeyDates(text.stdout).keys) expected.push(`${service}/${k.name}=${Math.floor(Date.parse(k.notAfter) / 1000)}`);
    }
    // Core holds no key without a date of its own; the other two hold their SSH keys and secrets.
    assert.deepEqual(expected.map((e) => e.split('=')[0]).sort(), ['broker/id_ed25519', 'broker/knock-gw1.secret', 'gateway/knock.secret', 'gateway/queue.password', 'gateway/ssh_host_ed25519_key']);
    assert.deepEqual(series.map((s) => `${s.metric.service}/${s.metric.key}=${s.value}`).sort(), expected.sort());
  });

  it('has loaded every alert rule of deploy/monitoring/rules/nonstop.rules.yml, none of them firing on a healthy stack', async () => {
    const file = parse(readFileSync(join(REPO_ROOT, 'deploy', 'monitoring', 'rules', 'nonstop.rules.yml'), 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
    const expected = file.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined).sort();
    type Rule = { name: string; state: string; health: string };
    const rules = async (): Promise<Rule[]> => ((await (await fetch(`${base}/api/v1/rules?type=alert`)).json()) as { data: { groups: { rules: Rule[] }[] } }).data.groups.flatMap((g) => g.rules);
    // A rule's health is "unknown" until its group's first evaluation (every 10 s), which may
    // not have come yet on a stack that just started; after it, "ok" or "err".
    const loaded = await waitFor('every rule evaluated once', async () => {
      const now = await rules();
      return now.length > 0 && now.every((r) => r.health !== 'unknown') ? now : undefined;
    }, 60_000, 1000);
    assert.deepEqual(loaded.map((r) => r.name).sort(), expected);
    for (const r of loaded) assert.equal(r.health, 'ok', `${r.name} evaluates with errors`);
    assert.deepEqual(loaded.filter((r) => r.state === 'firing').map((r) => r.name), []);
  });

  it('leaves the edge network what it saw before: the gateway metrics port filtered, the broker listening on nothing there', async () => {
    const probe = inContainer(stack.docker, await stack.probe('edge'));
    const gatewayIp = await stack.ip('gateway', 'edge');
    assert.equal(await tcpProbe(probe, gatewayIp, 443), 'connected', 'positive control: the probe reaches the gateway on the edge');
    assert.equal(await tcpProbe(probe, gatewayIp, 9464), 'timeout', 'the gateway metrics port from the edge');
    // Refused: the broker's own kernel answered, and nothing listens on its edge address,
    // while the same port on its private address is what Prometheus scrapes (up == 1 above).
    assert.equal(await tcpProbe(probe, await stack.ip('broker', 'edge'), 9464), 'refused', 'the broker metrics port on its edge address');
    const prometheusNetworks = Object.keys((await stack.inspect('prometheus')).NetworkSettings.Networks).sort();
    assert.deepEqual(prometheusNetworks, ['monitoring', 'monitoring-ui', 'private'].map((n) => stack.name(n)));
  });

  it("answers its API on the host's loopback only: no tier reaches it, and it does not route between its networks", async () => {
    assert.equal((await fetch(`${base}/-/ready`)).status, 200, 'positive control: the published port answers');
    const prometheusOn = async (network: string): Promise<string> => stack.ip('prometheus', network);
    // The gateway shares `monitoring` with Prometheus, the broker and core share `private`.
    assert.equal(await tcpProbe(inContainer(stack.docker, stack.container('gateway')), await prometheusOn('monitoring'), 9090), 'refused', 'gateway -> prometheus:9090');
    assert.equal(await tcpProbe(inContainer(stack.docker, stack.container('broker')), await prometheusOn('private'), 9090), 'refused', 'broker -> prometheus:9090');
    const forward = await stack.exec('prometheus', ['cat', '/proc/sys/net/ipv4/ip_forward']);
    assert.equal(forward.exitCode, 0, forward.stderr);
    assert.equal(forward.stdout.trim(), '0');
  });
});
