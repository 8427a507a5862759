import assert from 'node:assert/strict';
import {
  knockPortRanges,
  renderAllow,
  renderRemoveTable,
  renderRevoke,
  renderRuleset,
  SET_V4,
  SET_V6,
  TABLE,
  type RulesetOptions,
} from '../../../../services/gateway/firewall/ruleset';

const base: RulesetOptions = { scope: 'namespace', publicPorts: [80, 443], sshPort: 2222, knockPorts: [[40000, 40999]], maxOpenWindows: 4096 };
const lines = (text: string): string[] => text.split('\n').map((l) => l.trim());
/** The rules of the input chain: the lines between its hook line and its closing brace. */
const rules = (text: string): string[] => {
  const l = lines(text);
  const hook = l.findIndex((x) => x.startsWith('type filter hook input'));
  return l.slice(hook + 1, l.indexOf('}', hook));
};

describe('renderRuleset in namespace scope', () => {
  const text = renderRuleset(base);
  const l = lines(text);

  it('starts with create-then-delete of the table so the load is idempotent and atomic', () => {
    assert.deepEqual(l.slice(0, 3), [`table inet ${TABLE}`, `delete table inet ${TABLE}`, `table inet ${TABLE} {`]);
  });

  it('drops by default on the input hook', () => {
    assert.ok(l.includes('type filter hook input priority filter; policy drop;'));
    assert.equal(text.match(/policy /g)?.length, 1);
    assert.doesNotMatch(text, /policy accept/);
  });

  it('declares both address sets with timeouts and the configured size', () => {
    assert.ok(l.includes(`set ${SET_V4} { type ipv4_addr; flags timeout; size 4096; }`));
    assert.ok(l.includes(`set ${SET_V6} { type ipv6_addr; flags timeout; size 4096; }`));
  });

  it('lets the SSH port through only from the set of its address family', () => {
    assert.ok(l.includes(`tcp dport 2222 ip saddr @${SET_V4} accept`));
    assert.ok(l.includes(`tcp dport 2222 ip6 saddr @${SET_V6} accept`));
    const sshRules = l.filter((x) => x.includes('2222'));
    assert.equal(sshRules.length, 2, 'no unconditional SSH rule');
  });

  it('accepts the public ports, loopback, established traffic and ICMP, in that guarded order', () => {
    assert.ok(l.includes('tcp dport { 80, 443 } accept'));
    const at = (rule: string): number => l.indexOf(rule);
    assert.ok(at('iif "lo" accept') > 0);
    assert.ok(at('ct state invalid drop') < at('ct state established,related accept'));
    assert.ok(at('meta l4proto 1 accept') > 0);
    assert.ok(at('meta l4proto 58 accept') > 0);
    assert.deepEqual(lines(renderRuleset({ ...base, publicPorts: [8080, 8443, 9000] })).filter((x) => x.startsWith('tcp dport {')), ['tcp dport { 8080, 8443, 9000 } accept']);
  });

  it('has no metrics rule when no CIDRs are given', () => {
    assert.doesNotMatch(text, /9464/);
    assert.doesNotMatch(renderRuleset({ ...base, metrics: { port: 9464, allowCidrs: [] } }), /9464/);
  });

  it('splits metrics CIDRs into an IPv4 and an IPv6 rule', () => {
    const withMetrics = lines(renderRuleset({ ...base, metrics: { port: 9464, allowCidrs: ['10.0.0.0/8', 'fd00::/8', '192.168.1.0/24', '2001:db8::/32'] } }));
    assert.ok(withMetrics.includes('tcp dport 9464 ip saddr { 10.0.0.0/8, 192.168.1.0/24 } accept'));
    assert.ok(withMetrics.includes('tcp dport 9464 ip6 saddr { fd00::/8, 2001:db8::/32 } accept'));
    const v4only = lines(renderRuleset({ ...base, metrics: { port: 9464, allowCidrs: ['10.1.2.0/24'] } }));
    assert.deepEqual(v4only.filter((x) => x.includes('9464')), ['tcp dport 9464 ip saddr { 10.1.2.0/24 } accept']);
    const v6only = lines(renderRuleset({ ...base, metrics: { port: 9464, allowCidrs: ['fd12::/16'] } }));
    assert.deepEqual(v6only.filter((x) => x.includes('9464')), ['tcp dport 9464 ip6 saddr { fd12::/16 } accept']);
  });

  it('ignores the knock ports: the policy drops them with every other port', () => {
    assert.doesNotMatch(text, /40000/);
  });

  it('places every accept rule inside the input chain and closes table and chain', () => {
    const full = lines(renderRuleset({ ...base, metrics: { port: 9464, allowCidrs: ['10.0.0.0/8'] } }));
    const chainAt = full.indexOf('chain input {');
    assert.ok(full.every((x, i) => !x.endsWith('accept') || i > chainAt));
    assert.deepEqual(full.slice(-3), ['}', '}', '']);
  });
});

describe('renderRuleset in ports scope (host networking)', () => {
  const ports: RulesetOptions = { ...base, scope: 'ports' };
  const text = renderRuleset(ports);
  const l = lines(text);
  const r = rules(text);
  const ours = 'tcp dport { 2222, 40000-40999 }';

  it('accepts by default, at a priority just before the standard filter chains', () => {
    assert.ok(l.includes('type filter hook input priority filter - 10; policy accept;'));
    assert.equal(text.match(/policy /g)?.length, 1);
    assert.doesNotMatch(text, /policy drop/);
  });

  it('drops only packets addressed to the SSH port or the knock ports, and rejects nothing', () => {
    const drops = r.filter((x) => /\bdrop\b/.test(x));
    assert.deepEqual(drops, [`${ours} ct state invalid drop`, `${ours} drop`]);
    assert.doesNotMatch(text, /reject/);
  });

  it('has no rule that is not about its own ports but the loopback accept, which only hands packets on', () => {
    assert.deepEqual(r.filter((x) => !x.startsWith('tcp dport ')), ['iif "lo" accept']);
    assert.deepEqual(
      r.filter((x) => x.startsWith('tcp dport ')).filter((x) => !x.startsWith(`${ours} `) && !x.startsWith('tcp dport 2222 ')),
      [],
    );
    assert.doesNotMatch(text, /\b(80|443)\b/, 'the public ports are the host operator\'s to govern');
    assert.doesNotMatch(text, /l4proto/);
  });

  it('lets the SSH port through from the window sets and established sessions, before the final drop', () => {
    assert.deepEqual(r, [
      'iif "lo" accept',
      `${ours} ct state invalid drop`,
      `${ours} ct state established,related accept`,
      `tcp dport 2222 ip saddr @${SET_V4} accept`,
      `tcp dport 2222 ip6 saddr @${SET_V6} accept`,
      `${ours} drop`,
    ]);
  });

  it('names the static sequence ports, sorted, merged and without repeats', () => {
    const text2 = renderRuleset({ ...ports, knockPorts: knockPortRanges({ mode: 'static', ports: [9000, 7000, 7001, 9000, 8000] }) });
    assert.ok(rules(text2).includes('tcp dport { 2222, 7000-7001, 8000, 9000 } drop'));
  });

  it('merges an SSH port that lies inside the knock range into one interval (older nft refuses overlaps)', () => {
    assert.ok(rules(renderRuleset({ ...ports, sshPort: 40500 })).includes('tcp dport { 40000-40999 } drop'));
    assert.ok(rules(renderRuleset({ ...ports, sshPort: 39999 })).includes('tcp dport { 39999-40999 } drop'));
  });

  it('filters the metrics port too when metrics CIDRs are given, and leaves it alone otherwise', () => {
    const withMetrics = rules(renderRuleset({ ...ports, metrics: { port: 9464, allowCidrs: ['10.0.0.0/8', 'fd00::/8'] } }));
    const all = 'tcp dport { 2222, 9464, 40000-40999 }';
    assert.deepEqual(withMetrics.slice(-3), ['tcp dport 9464 ip saddr { 10.0.0.0/8 } accept', 'tcp dport 9464 ip6 saddr { fd00::/8 } accept', `${all} drop`]);
    assert.ok(withMetrics.includes(`${all} ct state established,related accept`));
    assert.doesNotMatch(renderRuleset({ ...ports, metrics: { port: 9464, allowCidrs: [] } }), /9464/);
  });
});

describe('renderRuleset in either scope', () => {
  it('names no table but its own and flushes or deletes nothing else', () => {
    for (const scope of ['namespace', 'ports'] as const) {
      const text = renderRuleset({ ...base, scope });
      const tableLines = lines(text).filter((x) => /\btable\b/.test(x));
      assert.deepEqual(tableLines, [`table inet ${TABLE}`, `delete table inet ${TABLE}`, `table inet ${TABLE} {`], scope);
      assert.doesNotMatch(text, /flush|ruleset|destroy/, scope);
    }
  });
});

describe('knockPortRanges', () => {
  it('gives each port of a static sequence, or the whole time-based range', () => {
    assert.deepEqual(knockPortRanges({ mode: 'static', ports: [7000, 8000, 9000] }), [[7000, 7000], [8000, 8000], [9000, 9000]]);
    assert.deepEqual(knockPortRanges({ mode: 'time', secret: Buffer.alloc(16), length: 4, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 }), [[40000, 40999]]);
  });
});

describe('renderAllow', () => {
  it('adds, deletes and re-adds an IPv4 address with a fresh timeout', () => {
    assert.equal(
      renderAllow('198.51.100.7', 15_000),
      [
        `add element inet ${TABLE} ${SET_V4} { 198.51.100.7 }`,
        `delete element inet ${TABLE} ${SET_V4} { 198.51.100.7 }`,
        `add element inet ${TABLE} ${SET_V4} { 198.51.100.7 timeout 15000ms }`,
        '',
      ].join('\n'),
    );
  });

  it('uses the IPv6 set for an IPv6 address', () => {
    const text = renderAllow('2001:db8::7', 15_000);
    assert.match(text, new RegExp(`^add element inet ${TABLE} ${SET_V6} \\{ 2001:db8::7 \\}$`, 'm'));
    assert.match(text, new RegExp(`^add element inet ${TABLE} ${SET_V6} \\{ 2001:db8::7 timeout 15000ms \\}$`, 'm'));
    assert.doesNotMatch(text, new RegExp(SET_V4));
  });

  it('rounds the window up to whole milliseconds, at least 1', () => {
    const timeout = (ms: number): string => /timeout (\S+) \}/.exec(renderAllow('192.0.2.1', ms))![1]!;
    assert.equal(timeout(1500.2), '1501ms');
    assert.equal(timeout(0.4), '1ms');
    assert.equal(timeout(0), '1ms');
    assert.equal(timeout(-50), '1ms');
    assert.equal(timeout(30_000), '30000ms');
  });

  it('refuses anything that is not a bare IP address (no nft injection)', () => {
    const attempts = [
      '1.2.3.4 } ; flush ruleset',
      '1.2.3.4 }\nflush ruleset\nadd element inet x y { 5.6.7.8',
      '1.2.3.4\nflush ruleset',
      '1.2.3.4/24',
      '1.2.3.4 ',
      ' 1.2.3.4',
      '::1 } ; flush ruleset',
      '2001:db8::1/64',
      '',
      'example.com',
      '256.1.1.1',
      '1.2.3',
    ];
    for (const a of attempts) {
      assert.throws(() => renderAllow(a, 1000), (err: unknown) => err instanceof TypeError && err.message === `not an IP address: ${JSON.stringify(a)}`, JSON.stringify(a));
      assert.throws(() => renderRevoke(a), TypeError, JSON.stringify(a));
    }
  });
});

describe('renderRevoke', () => {
  it('adds then deletes the address so it is absent afterwards whether or not it was present', () => {
    assert.equal(renderRevoke('203.0.113.5'), `add element inet ${TABLE} ${SET_V4} { 203.0.113.5 }\ndelete element inet ${TABLE} ${SET_V4} { 203.0.113.5 }\n`);
    assert.equal(renderRevoke('fe80::1'), `add element inet ${TABLE} ${SET_V6} { fe80::1 }\ndelete element inet ${TABLE} ${SET_V6} { fe80::1 }\n`);
  });
});

describe('renderRemoveTable', () => {
  it('removes the table without failing when it is absent', () => {
    assert.equal(renderRemoveTable(), `table inet ${TABLE}\ndelete table inet ${TABLE}\n`);
  });
});
