import assert from 'node:assert/strict';
import { brokerAcl, gatewayAcl, renderRedisConf, type RedisConfOptions } from '../../../../services/broker/redis/config';

const BROKER_HASH = 'a'.repeat(64);
const GW1_HASH = 'b'.repeat(64);
const GW2_HASH = 'c'.repeat(64);

const options: RedisConfOptions = {
  port: 6390,
  maxMemoryBytes: 64 * 1024 * 1024,
  dir: '/run/nonstop/redis',
  brokerPasswordSha256: BROKER_HASH,
  gateways: [
    { id: 'gw-1', username: 'gateway-gw-1', passwordSha256: GW1_HASH },
    { id: 'edge2', username: 'gateway-edge2', passwordSha256: GW2_HASH },
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

  it('has exactly one user line for the broker and one per gateway', () => {
    const users = all.filter((l) => l.startsWith('user ')).map((l) => l.split(' ')[1]);
    assert.deepEqual(users, ['default', 'broker', 'gateway-gw-1', 'gateway-edge2']);
    assert.ok(all.includes(brokerAcl(BROKER_HASH)));
    assert.ok(all.includes(gatewayAcl(options.gateways[0]!)));
    assert.ok(all.includes(gatewayAcl(options.gateways[1]!)));
  });

  it('holds password hashes only, never a plaintext password', () => {
    for (const l of all.filter((x) => x.startsWith('user '))) {
      assert.ok(!/(^|\s)>/.test(l), `plaintext password in ${l}`);
      assert.ok(!/\bnopass\b/.test(l), `nopass in ${l}`);
    }
    assert.ok(conf.includes(`#${BROKER_HASH}`));
    assert.ok(conf.includes(`#${GW1_HASH}`));
    assert.ok(conf.includes(`#${GW2_HASH}`));
  });

  it('ends with a newline', () => {
    assert.ok(conf.endsWith('\n'));
  });
});

describe('gatewayAcl', () => {
  it('grants a gateway only XADD on its request stream and its own reply channel', () => {
    assert.equal(
      gatewayAcl({ id: 'gw-1', username: 'gateway-gw-1', passwordSha256: GW1_HASH }),
      `user gateway-gw-1 on #${GW1_HASH} resetkeys resetchannels &nonstop:v2:gw:gw-1:replies -@all +ping +subscribe +unsubscribe ` + '(%W~nonstop:v2:gw:gw-1:req +xadd)',
    );
  });

  it('mentions no other gateway and no broad key pattern', () => {
    const acl = gatewayAcl({ id: 'gw-1', username: 'gateway-gw-1', passwordSha256: GW1_HASH });
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
  });
});
