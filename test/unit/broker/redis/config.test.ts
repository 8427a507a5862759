import assert from 'node:assert/strict';
import { MAX_RESPONSE_BYTES } from '../../../../services/broker/core-client/client';
import {
  adminAcl,
  brokerAcl,
  gatewayAcl,
  gatewayAclRules,
  MAX_ENTRIES_PER_READ,
  MAX_QUEUE_CHANNELS_PER_GATEWAY,
  redisLimits,
  redisMemoryProblem,
  renderRedisConf,
  type RedisConfOptions,
  type RedisLimitInputs,
} from '../../../../services/broker/redis/config';
import { MAX_ENVELOPE_BYTES } from '../../../../services/common/queue/envelope';

const BROKER_HASH = 'a'.repeat(64);
const ADMIN_HASH = 'd'.repeat(64);
const GW1_HASH = 'b'.repeat(64);
const GW2_HASH = 'c'.repeat(64);

const MiB = 1024 * 1024;
/** The broker's defaults (services/broker/config.ts) with two gateways. */
const inputs: RedisLimitInputs = { gateways: 2, maxMemoryBytes: 64 * MiB, maxBudgetMs: 30_000, claimIntervalMs: 1000 };

const options: RedisConfOptions = {
  port: 6390,
  maxMemoryBytes: 64 * 1024 * 1024,
  limits: redisLimits(inputs),
  dir: '/run/nonstop/redis',
  brokerPasswordSha256: BROKER_HASH,
  adminPasswordSha256: ADMIN_HASH,
  gateways: [
    { id: 'gw-1', username: 'gateway-gw-1', passwordSha256s: [GW1_HASH] },
    { id: 'edge2', username: 'gateway-edge2', passwordSha256s: [GW2_HASH] },
  ],
};

function lines(conf: string): string[] {
  return conf.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

describe('renderRedisConf', () => {
  const conf = renderRedisConf(options);
  const all = lines(conf);

  it('turns off every kind of persistence', () => {
    assert.ok(all.includes('save ""'));
    assert.ok(all.includes('appendonly no'));
    assert.ok(!all.some((l) => /^appendonly yes|^save \d/.test(l)));
    assert.ok(all.includes('dir /run/nonstop/redis'));
  });

  it('caps memory and refuses writes instead of evicting when full', () => {
    assert.ok(all.includes(`maxmemory ${64 * 1024 * 1024}`));
    assert.ok(all.includes('maxmemory-policy noeviction'));
  });

  it('listens on loopback only, on the given port, in protected mode', () => {
    const binds = all.filter((l) => l.startsWith('bind '));
    assert.deepEqual(binds, ['bind 127.0.0.1 -::1']);
    assert.ok(all.includes('port 6390'));
    assert.ok(all.includes('protected-mode yes'));
  });

  it('turns off the debug and module commands and protected configs', () => {
    assert.ok(all.includes('enable-debug-command no'));
    assert.ok(all.includes('enable-module-command no'));
    assert.ok(all.includes('enable-protected-configs no'));
  });

  it('switches the default user off with no rights', () => {
    assert.ok(all.includes('user default off resetkeys resetchannels -@all'));
    assert.ok(!all.some((l) => l.startsWith('user default on')));
  });

  it('has exactly one user line for the broker, one for its admin and one per gateway', () => {
    const users = all.filter((l) => l.startsWith('user ')).map((l) => l.split(' ')[1]);
    assert.deepEqual(users, ['default', 'broker', 'broker-admin', 'gateway-gw-1', 'gateway-edge2']);
    assert.ok(all.includes(brokerAcl(BROKER_HASH)));
    assert.ok(all.includes(adminAcl(ADMIN_HASH)));
    assert.ok(all.includes(gatewayAcl(options.gateways[0]!)));
    assert.ok(all.includes(gatewayAcl(options.gateways[1]!)));
  });

  it('holds password hashes only, never a plaintext password', () => {
    for (const l of all.filter((x) => x.startsWith('user '))) {
      assert.ok(!/(^|\s)>/.test(l), `plaintext password in ${l}`);
      assert.ok(!/\bnopass\b/.test(l), `nopass in ${l}`);
    }
    assert.ok(conf.includes(`#${BROKER_HASH}`));
    assert.ok(conf.includes(`#${ADMIN_HASH}`));
    assert.ok(conf.includes(`#${GW1_HASH}`));
    assert.ok(conf.includes(`#${GW2_HASH}`));
  });

  it('ends with a newline', () => {
    assert.ok(conf.endsWith('\n'));
  });

  it('renders every client limit once, as derived, and no unlimited idle timeout', () => {
    const l = options.limits;
    const expected = [
      `maxclients ${l.maxclients}`,
      `timeout ${l.timeoutSeconds}`,
      `proto-max-bulk-len ${l.protoMaxBulkLen}`,
      `client-query-buffer-limit ${l.clientQueryBufferLimit}`,
      `maxmemory-clients ${l.maxmemoryClients}`,
      'client-output-buffer-limit normal 0 0 0',
      `client-output-buffer-limit pubsub ${l.pubsub.hardBytes} ${l.pubsub.softBytes} ${l.pubsub.softSeconds}`,
    ];
    for (const line of expected) assert.equal(all.filter((x) => x === line).length, 1, line);
    for (const key of ['maxclients', 'timeout', 'proto-max-bulk-len', 'client-query-buffer-limit', 'maxmemory-clients']) {
      assert.equal(all.filter((x) => x.startsWith(`${key} `)).length, 1, key);
    }
    assert.ok(!all.includes('timeout 0'));
    // Every value is a plain positive number of bytes/seconds/clients, not Redis's "unlimited" 0.
    for (const v of [l.maxclients, l.timeoutSeconds, l.protoMaxBulkLen, l.clientQueryBufferLimit, l.maxmemoryClients, l.pubsub.hardBytes, l.pubsub.softBytes, l.pubsub.softSeconds]) {
      assert.ok(Number.isSafeInteger(v) && v > 0, String(v));
    }
  });
});

describe('redisLimits', () => {
  const l = redisLimits(inputs);

  it('refuses any argument larger than the largest envelope the broker decodes, with a margin that keeps the broker the one refusing near the limit', () => {
    assert.ok(l.protoMaxBulkLen > MAX_ENVELOPE_BYTES);
    assert.ok(l.protoMaxBulkLen <= MAX_ENVELOPE_BYTES + 128 * 1024, String(l.protoMaxBulkLen));
    // Redis's own floor for the setting.
    assert.ok(l.protoMaxBulkLen >= MiB);
    // The attack from the review: a 300 MB argument.
    assert.ok(l.protoMaxBulkLen < 300e6 / 100);
  });

  it('bounds the query buffer to one whole argument and the start of the next', () => {
    assert.ok(l.clientQueryBufferLimit >= l.protoMaxBulkLen);
    assert.ok(l.clientQueryBufferLimit <= 2 * l.protoMaxBulkLen);
    assert.ok(l.clientQueryBufferLimit >= MiB);
  });

  it("fits up to four of core's largest replies in a subscriber's buffer, cuts one holding more than two for 10 s", () => {
    assert.ok(l.pubsub.hardBytes >= 4 * MAX_RESPONSE_BYTES);
    assert.ok(l.pubsub.hardBytes <= 4 * (MAX_RESPONSE_BYTES + 128 * 1024));
    assert.ok(l.pubsub.softBytes >= 2 * MAX_RESPONSE_BYTES && l.pubsub.softBytes < l.pubsub.hardBytes);
    assert.equal(l.pubsub.softSeconds, 10);
  });

  it("gives clients room for every gateway's connections, a full reply burst, envelopes being read and the consumer's largest batch, at most half of maxmemory", () => {
    const batch = MAX_ENTRIES_PER_READ * MAX_ENVELOPE_BYTES;
    assert.ok(l.maxmemoryClients >= l.pubsub.hardBytes + l.clientQueryBufferLimit + batch + (inputs.gateways * 2 + 2) * 32 * 1024);
    assert.equal(l.maxmemoryClients, l.clientMemoryWanted);
    assert.ok(l.maxmemoryClients <= inputs.maxMemoryBytes / 2);
    // The consumer's batch is a small part of it: four envelopes, not its whole concurrency.
    assert.equal(MAX_ENTRIES_PER_READ, 4);
    // A smaller maxmemory caps it at half rather than letting client buffers crowd out the
    // queues; what it would have wanted is still reported (startRedis warns).
    const small = redisLimits({ ...inputs, maxMemoryBytes: 16 * MiB });
    assert.equal(small.maxmemoryClients, 8 * MiB);
    assert.equal(small.clientMemoryWanted, l.clientMemoryWanted);
    // More gateways, more room for their idle connections.
    assert.ok(redisLimits({ ...inputs, maxMemoryBytes: 1024 * MiB, gateways: 50 }).maxmemoryClients > l.maxmemoryClients);
  });

  it("sizes maxclients so that gateways at the keeper's channel cap still leave the broker's own connections a slot", () => {
    assert.equal(MAX_QUEUE_CHANNELS_PER_GATEWAY, 8);
    for (const gateways of [1, 2, 10, 1000]) {
      const m = redisLimits({ ...inputs, gateways }).maxclients;
      assert.ok(m >= gateways * MAX_QUEUE_CHANNELS_PER_GATEWAY + 2, `${gateways}: ${m}`);
      assert.ok(m <= gateways * MAX_QUEUE_CHANNELS_PER_GATEWAY + 8, `${gateways}: ${m}`);
    }
  });

  it("times idle clients out only past twice the longest silence of a healthy one (a lane's 60 s ping, the writer's claim interval, the reader's wait)", () => {
    assert.equal(l.timeoutSeconds, 120);
    assert.equal(redisLimits({ ...inputs, claimIntervalMs: 600_000 }).timeoutSeconds, 1200);
    assert.equal(redisLimits({ ...inputs, maxBudgetMs: 120_000 }).timeoutSeconds, 240);
  });
});

describe('redisMemoryProblem', () => {
  it('accepts the default 64 MiB for a few dozen gateways, and 16 MiB for a few', () => {
    assert.equal(redisMemoryProblem({ gateways: 1, maxMemoryBytes: 64 * MiB }), undefined);
    assert.equal(redisMemoryProblem({ gateways: 40, maxMemoryBytes: 64 * MiB }), undefined);
    assert.equal(redisMemoryProblem({ gateways: 3, maxMemoryBytes: 16 * MiB }), undefined);
  });

  it("refuses a maxmemory whose half cannot hold the gateways' idle connections and one largest request", () => {
    assert.match(redisMemoryProblem({ gateways: 1, maxMemoryBytes: 2 * MiB }) ?? '', /^REDIS_MAXMEMORY_BYTES=2097152: too small for 1 gateway\(s\); at least \d+/);
    assert.match(redisMemoryProblem({ gateways: 1000, maxMemoryBytes: 64 * MiB }) ?? '', /too small for 1000 gateway/);
    assert.equal(redisMemoryProblem({ gateways: 1000, maxMemoryBytes: 512 * MiB }), undefined);
  });
});

describe('gatewayAcl', () => {
  it('grants a gateway only XADD on its request stream and its own reply channel', () => {
    assert.equal(
      gatewayAcl({ id: 'gw-1', username: 'gateway-gw-1', passwordSha256s: [GW1_HASH] }),
      `user gateway-gw-1 on #${GW1_HASH} resetkeys resetchannels &nonstop:v2:gw:gw-1:replies -@all +ping +subscribe +unsubscribe ` + '(%W~nonstop:v2:gw:gw-1:req +xadd)',
    );
  });

  it('mentions no other gateway and no broad key pattern', () => {
    const acl = gatewayAcl({ id: 'gw-1', username: 'gateway-gw-1', passwordSha256s: [GW1_HASH] });
    for (const token of acl.split(' ')) {
      if (/^[~&(%]/.test(token)) assert.match(token, /nonstop:v2:gw:gw-1:/, token);
    }
    assert.ok(!acl.includes('allkeys') && !acl.includes('allchannels') && !acl.includes('+@all'));
    assert.ok(!acl.includes('~*') && !acl.includes('&*'));
  });
});

describe('brokerAcl', () => {
  it('gives the broker only the queue commands it uses, on the nonstop keys', () => {
    const acl = brokerAcl(BROKER_HASH);
    assert.match(acl, new RegExp(`^user broker on #${BROKER_HASH} resetkeys resetchannels ~nonstop:v2:\\* &nonstop:v2:\\* -@all `));
    // No SET and no MULTI: v2 stores no replies, and nothing queued in a MULTI survives maxmemory.
    for (const forbidden of ['+@all', '+config', '+eval', '+keys', '+flushall', '+debug', '+shutdown', '+acl', 'allkeys', '+set', '+multi', '+exec']) {
      assert.ok(!acl.split(' ').includes(forbidden), forbidden);
    }
    for (const needed of ['+xreadgroup', '+xautoclaim', '+xclaim', '+xack', '+xdel', '+xtrim', '+time', '+publish']) assert.ok(acl.split(' ').includes(needed), needed);
    // CLIENT NO-EVICT for its own connections, and no other CLIENT subcommand (KILL, LIST, ...).
    assert.ok(acl.split(' ').includes('+client|no-evict'));
    assert.ok(!acl.split(' ').some((t) => t === '+client' || t === '+@connection' || t === '+@admin'));
  });
});

describe('adminAcl', () => {
  it('gives the admin user only what applying a gateway list needs, on no key and no channel', () => {
    const acl = adminAcl(ADMIN_HASH);
    assert.equal(acl, `user broker-admin on #${ADMIN_HASH} resetkeys resetchannels -@all +ping +acl|setuser +acl|deluser +client|kill +config|set`);
    for (const token of acl.split(' ')) assert.ok(!/^[~&%(]/.test(token) && token !== 'allkeys' && token !== 'allchannels', token);
  });
});

describe('gatewayAclRules', () => {
  it('are the rules of the rendered user line, one ACL SETUSER argument each (the selector whole)', () => {
    const g = { id: 'gw-1', username: 'gateway-gw-1', passwordSha256s: [GW1_HASH] };
    const rules = gatewayAclRules(g);
    assert.equal(['user', g.username, ...rules].join(' '), gatewayAcl(g));
    assert.equal(rules.at(-1), '(%W~nonstop:v2:gw:gw-1:req +xadd)');
  });
});
