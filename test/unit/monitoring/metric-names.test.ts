import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { exportedSeriesNames, metricNamesIn, unknownMetricNames } from '../../support/promql-names';

const MONITORING = join(__dirname, '..', '..', '..', '..', 'deploy', 'monitoring');

interface Panel {
  title?: string;
  type: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

function ruleExprs(): { where: string; expr: string }[] {
  const file = parse(readFileSync(join(MONITORING, 'rules', 'nonstop.rules.yml'), 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] };
  return file.groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: String(r.expr) })));
}

function dashboardExprs(): { where: string; expr: string }[] {
  const dash = JSON.parse(readFileSync(join(MONITORING, 'grafana', 'nonstop.json'), 'utf8')) as { panels: Panel[] };
  const all = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...all(p.panels ?? [])]);
  return all(dash.panels)
    .filter((p) => p.type !== 'row')
    .flatMap((p) => {
      assert.ok((p.targets ?? []).length > 0, `panel ${p.title} has no query`);
      return p.targets!.map((t) => ({ where: `panel ${p.title}`, expr: t.expr ?? '' }));
    });
}

/**
 * The alert rules and the Grafana dashboard ask only for series the services export: every
 * metric name in their PromQL is one a tier's metric definitions create (services/*\/metrics.ts,
 * services/common/metrics/, the process defaults), so a renamed or removed metric breaks
 * this test instead of leaving a panel blank and an alert silent.
 */
describe('metric names in deploy/monitoring', () => {
  const known = exportedSeriesNames();

  it('finds metric names in PromQL, and only them (functions, keywords, labels, ranges and variables are not)', () => {
    assert.deepEqual(
      metricNamesIn('histogram_quantile(0.99, sum by (instance, le) (rate(nonstop_broker_core_seconds_bucket{job="broker", le!="x"}[5m]))) > 1 and on(instance) up == bool 1'),
      ['nonstop_broker_core_seconds_bucket', 'up'],
    );
    assert.deepEqual(metricNamesIn('max by (instance) (a_total / b) > 0.8 or c - time() < 21 * 86400 unless d offset 5m'), ['a_total', 'b', 'c', 'd']);
    assert.deepEqual(metricNamesIn('rate(x_total[$__rate_interval]) / ${datasource}'), ['x_total']);
  });

  it('names only exported series in every alert and recording rule', () => {
    const exprs = ruleExprs();
    assert.ok(exprs.length >= 10, `only ${exprs.length} rules read`);
    for (const e of exprs) assert.ok(metricNamesIn(e.expr).length > 0, `${e.where} selects no metric: nothing to check`);
    assert.deepEqual(unknownMetricNames(exprs, known), []);
  });

  it('names only exported series in every dashboard panel query', () => {
    const exprs = dashboardExprs();
    assert.ok(exprs.length >= 20, `only ${exprs.length} queries read`);
    for (const e of exprs) assert.ok(metricNamesIn(e.expr).length > 0, `${e.where} selects no metric: nothing to check`);
    assert.deepEqual(unknownMetricNames(exprs, known), []);
  });

  it('flags a name no tier exports, from the same definitions (positive control)', () => {
    assert.ok(known.has('nonstop_tunnels_ready') && known.has('nonstop_certificate_expiry_timestamp_seconds') && known.has('process_resident_memory_bytes'));
    assert.deepEqual(
      unknownMetricNames([{ where: 'rule Typo', expr: 'nonstop_tunnel_ready == 0 or nonstop_tunnels_ready == 0' }, { where: 'panel Removed', expr: 'rate(nonstop_gateway_requests[5m])' }], known),
      ['rule Typo: nonstop_tunnel_ready', 'panel Removed: nonstop_gateway_requests'],
    );
  });
});
