import { createRegistry } from '../../services/common/metrics/server';
import { brokerMetrics } from '../../services/broker/metrics';
import { coreMetrics } from '../../services/core/metrics';
import { admissionMetrics, gatewayMetrics } from '../../services/gateway/metrics';

/** Series Prometheus itself writes for every target. */
const PROMETHEUS_OWN = ['up', 'scrape_duration_seconds', 'scrape_samples_scraped'];

/**
 * Every series name the three tiers export, from their metric definitions: each tier's
 * registry built as its main.ts builds it (process defaults included), a histogram expanded
 * to its _bucket, _sum and _count series; plus the series Prometheus adds per target.
 */
export function exportedSeriesNames(): Set<string> {
  const gateway = createRegistry('gateway');
  gatewayMetrics(gateway);
  admissionMetrics(gateway, { pending: { requests: 0, bytes: 0 } }, { maxPendingRequests: 1, maxPendingBytes: 1 });
  const broker = createRegistry('broker');
  brokerMetrics(broker);
  const core = createRegistry('core');
  coreMetrics(core);
  const names = new Set<string>(PROMETHEUS_OWN);
  for (const registry of [gateway, broker, core]) {
    for (const m of registry.getMetricsAsArray()) {
      const { name, type } = m as unknown as { name: string; type: string };
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
      else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(`${name}${suffix}`);
      else names.add(name);
    }
  }
  return names;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

/**
 * The metric names a PromQL expression selects. Strings, label matchers, ranges, grouping
 * clauses and Grafana's $variables are removed first; what remains that is an identifier
 * not followed by `(` (a function or aggregation) and not a keyword is a metric name.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ');
  const names: string[] = [];
  for (const m of stripped.matchAll(/(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = stripped.slice(m.index + m[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** Each expression's names that no tier exports, as `where: name`. */
export function unknownMetricNames(exprs: readonly { where: string; expr: string }[], known: ReadonlySet<string>): string[] {
  return exprs.flatMap(({ where, expr }) => metricNamesIn(expr).filter((n) => !known.has(n)).map((n) => `${where}: ${n}`));
}
