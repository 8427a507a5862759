import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { requireBinary } from '../../support/binaries';
import { tempDir } from '../../support/tmp';

const MONITORING = join(__dirname, '..', '..', '..', '..', 'deploy', 'monitoring');
const RULES = join(MONITORING, 'rules', 'nonstop.rules.yml');
const RULES_TEST = join(MONITORING, 'rules', 'nonstop.rules.test.yml');

/** Where scripts/lib/promtool.sh (run by scripts/bootstrap.sh --test) puts it. */
function promtool(): string {
  const cache = process.env.NONSTOP_CACHE ?? '/var/cache/nonstop';
  return requireBinary('prometheus (promtool, fetched by scripts/lib/promtool.sh)', process.env.NONSTOP_PROMTOOL ?? join(cache, 'prometheus', 'promtool'));
}

function run(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(promtool(), args, { encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

interface RulesTest {
  rule_files: string[];
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}

/**
 * deploy/monitoring checked by Prometheus's own tool, as a user's CI would: the rules parse
 * (`promtool check rules`), the scrape configuration loads them (`check config`), and each
 * alert fires on the recorded series of nonstop.rules.test.yml and stays quiet where it
 * should (`test rules`). Each check is shown to fail on a broken input first.
 */
describe('alert rules under promtool', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir('nonstop-promtool-')));
  afterEach(() => tmp.cleanup());

  const alertNames = (): string[] => {
    const file = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert?: string }[] }[] };
    return file.groups.flatMap((g) => g.rules.flatMap((r) => (r.alert ? [r.alert] : [])));
  };

  it('rejects a rule file with a broken expression (positive control for check rules)', () => {
    const broken = join(tmp.dir, 'broken.rules.yml');
    writeFileSync(broken, 'groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: nonstop_tunnels_ready ==\n');
    const r = run(['check', 'rules', broken]);
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /FAILED/);
  });

  it('passes check rules on deploy/monitoring/rules/nonstop.rules.yml, counting every rule in it', () => {
    const r = run(['check', 'rules', RULES]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, new RegExp(`SUCCESS: ${alertNames().length} rules found`));
  });

  it('passes check config on deploy/monitoring/prometheus.yml, which loads that rule file', () => {
    const r = run(['check', 'config', join(MONITORING, 'prometheus.yml')]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /Checking .*rules\/nonstop\.rules\.yml/);
  });

  it('fails test rules when an expected alert does not fire as recorded (positive control for test rules)', () => {
    const spec = parse(readFileSync(RULES_TEST, 'utf8')) as RulesTest;
    // Expect NonstopNoReadyLanes for a gateway whose lanes were ready all along.
    const lanes = spec.tests.flatMap((t) => t.alert_rule_test ?? []).find((a) => a.alertname === 'NonstopNoReadyLanes');
    assert.ok(lanes, 'the test file checks NonstopNoReadyLanes');
    (lanes.exp_alerts[0] as { exp_labels: Record<string, string> }).exp_labels.instance = 'gw2:9464';
    copyFileSync(RULES, join(tmp.dir, 'nonstop.rules.yml'));
    writeFileSync(join(tmp.dir, 'wrong.test.yml'), stringify(spec));
    const r = run(['test', 'rules', join(tmp.dir, 'wrong.test.yml')]);
    assert.notEqual(r.status, 0, r.out);
    assert.match(r.out, /FAILED/);
  });

  it('passes test rules, with every alert rule shown firing on recorded series', () => {
    const spec = parse(readFileSync(RULES_TEST, 'utf8')) as RulesTest;
    const fired = new Set(spec.tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    assert.deepEqual([...fired].sort(), alertNames().sort(), 'an alert rule without a recorded case that fires it');
    const r = run(['test', 'rules', RULES_TEST]);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });
});
