import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../support/stack/build';
import { loadCompose, type ComposeSpec } from '../support/stack/compose-config';

/**
 * compose.yaml's `monitoring` profile against the rules every part keeps, and against the
 * network contract: Prometheus reaches each tier's metrics on an internal network, never on
 * `edge`; no network joins the gateway to the broker's or core's side; the published port is
 * on the host's loopback. test/e2e/monitoring/prometheus.test.ts runs it.
 */
describe('compose profile monitoring', () => {
  let spec: ComposeSpec;
  before(() => {
    spec = loadCompose({ NONSTOP_CORE_TARGET: 'core-ferretdb' }, ['monitoring']);
  });

  it('runs Prometheus only under the profile', () => {
    assert.ok(spec.services.prometheus, 'positive control: present with --profile monitoring');
    assert.equal(loadCompose({ NONSTOP_CORE_TARGET: 'core-ferretdb' }).services.prometheus, undefined);
  });

  it('runs Prometheus hardened like the tiers: read-only root, no capability, no-new-privileges, limits, no swap, no core dump', () => {
    const p = spec.services.prometheus!;
    assert.equal(p.readOnly, true);
    assert.deepEqual(p.capDrop, ['ALL']);
    assert.deepEqual(p.capAdd, []);
    assert.ok(p.securityOpt.includes('no-new-privileges:true'));
    assert.ok((p.memoryBytes ?? 0) > 0 && (p.pidsLimit ?? 0) > 0);
    assert.equal(p.memorySwapBytes, p.memoryBytes);
    assert.deepEqual(p.coreLimit, { soft: 0, hard: 0 });
  });

  it("publishes Prometheus on the host's loopback only, and keeps it off the edge network and from routing", () => {
    const p = spec.services.prometheus!;
    assert.ok(p.ports.length > 0, 'positive control: it publishes a port');
    for (const port of p.ports) assert.equal(port.hostIp, '127.0.0.1', JSON.stringify(port));
    assert.ok(!p.networks.includes('edge'), `prometheus networks ${p.networks.join(', ')}`);
    assert.equal(p.sysctls['net.ipv4.ip_forward'], '0');
    // Its API listens on the one network that exists to publish it, which no tier joins.
    assert.match(p.environment.WEB_LISTEN_ADDRESS ?? '', /^prometheus-ui:9090$/);
    assert.deepEqual(p.aliases['monitoring-ui'], ['prometheus-ui']);
    assert.deepEqual(Object.values(spec.services).filter((s) => s.networks.includes('monitoring-ui')).map((s) => s.name), ['prometheus']);
  });

  it('joins the gateway to Prometheus alone: no network holds the gateway and the broker or core', () => {
    for (const net of spec.services.gateway!.networks) {
      const members = Object.values(spec.services).filter((s) => s.networks.includes(net)).map((s) => s.name);
      assert.ok(!members.includes('core') && (net === 'edge' || !members.includes('broker')), `${net}: ${members.join(', ')}`);
    }
    assert.deepEqual(spec.services.core!.networks, ['private']);
    assert.equal(spec.networks.monitoring!.internal, true);
  });

  it("gives each tier's METRICS_SCRAPE_HOST as an alias on one internal network it shares with Prometheus, the name prometheus.yml scrapes", () => {
    const scrapeNames = (parse(readFileSync(join(REPO_ROOT, 'deploy', 'monitoring', 'prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string; dns_sd_configs: { names: string[] }[] }[] }).scrape_configs;
    for (const tier of ['gateway', 'broker', 'core']) {
      const s = spec.services[tier]!;
      const host = s.environment.METRICS_SCRAPE_HOST;
      assert.ok(host, `${tier} sets METRICS_SCRAPE_HOST`);
      const on = Object.entries(s.aliases).filter(([, aliases]) => aliases.includes(host)).map(([net]) => net);
      assert.equal(on.length, 1, `${tier}: ${host} is an alias on ${on.join(', ') || 'no network'}`);
      assert.notEqual(on[0], 'edge');
      assert.equal(spec.networks[on[0]!]!.internal, true, `${tier}: ${on[0]} is internal`);
      assert.ok(spec.services.prometheus!.networks.includes(on[0]!), `Prometheus is on ${on[0]}`);
      assert.deepEqual(scrapeNames.find((c) => c.job_name === tier)?.dns_sd_configs.flatMap((d) => d.names), [host], `prometheus.yml job ${tier}`);
    }
  });
});
