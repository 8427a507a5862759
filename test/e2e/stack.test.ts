import assert from 'node:assert/strict';
import { ApiClient, createToken } from '../support/stack/api-client';
import { upStack } from '../support/stack/fixture';
import { inContainer, lookupName, tcpProbe } from '../support/stack/net-probe';
import type { Stack } from '../support/stack/stack';
import { waitFor } from '../support/wait';

describe('the compose stack, built and run through the Docker API', function () {
  this.timeout(600_000);
  let stack: Stack;
  let api: ApiClient;
  let token: string;

  before(async () => {
    stack = await upStack();
    api = await ApiClient.forStack(stack);
    token = await createToken(stack, ['notes']);
  });

  after(async () => {
    await stack?.down();
  });

  it('stores a record sent over HTTPS to the gateway and reads it back', async () => {
    const record = { title: 'walking skeleton', body: 'through every tier', tags: ['e2e'] };
    const created = await waitFor('a tunnel to carry the first request', async () => {
      const res = await api.post('notes', record, token);
      return res.status === 503 ? undefined : res;
    });
    assert.equal(created.status, 201, created.text);
    const id = (created.json as { id: string }).id;
    assert.match(id, /^[0-9a-f-]{36}$/);
    const read = await api.get('notes', id, token);
    assert.equal(read.status, 200, read.text);
    assert.deepEqual((read.json as { data: unknown }).data, record);
  });

  it('publishes ports for the gateway and for no other service', async () => {
    for (const service of ['broker', 'core', 'keygen']) {
      const info = await stack.inspect(service);
      assert.deepEqual(Object.keys((info.HostConfig.PortBindings ?? {}) as Record<string, unknown>), [], `${service} has port bindings`);
    }
    const gw = await stack.inspect('gateway');
    assert.deepEqual(Object.keys((gw.HostConfig.PortBindings ?? {}) as Record<string, unknown>).sort(), ['2222/tcp', '443/tcp', '80/tcp']);
  });

  it('keeps core out of reach from the edge network', async () => {
    const probe = inContainer(stack.docker, await stack.probe('edge'));
    const coreIp = await stack.ip('core', 'private');
    const gatewayIp = await stack.ip('gateway', 'edge');
    // Positive controls from the same container with the same probes: a name on the edge
    // network resolves, and an open port on the edge network connects.
    assert.deepEqual(await lookupName(probe, 'gateway'), { outcome: 'resolved', address: gatewayIp });
    assert.equal(await tcpProbe(probe, gatewayIp, 443), 'connected');
    // No answer at all: neither a connection nor a reset from core's address.
    const core = await tcpProbe(probe, coreIp, 8443);
    assert.ok(core === 'timeout' || core === 'unreachable', `core ${coreIp}:8443 answered from the edge network: ${core}`);
    assert.equal((await lookupName(probe, 'core')).outcome, 'not-found', 'the name core resolves on the edge network');
    const gatewayPrivate = (await stack.inspect('gateway')).NetworkSettings.Networks[stack.name('private')];
    assert.equal(gatewayPrivate, undefined, 'the gateway is attached to the private network');
  });

  it('leaves nothing listening on the broker for the edge network', async () => {
    const probe = inContainer(stack.docker, await stack.probe('edge'));
    const brokerIp = await stack.ip('broker', 'edge');
    assert.equal(await tcpProbe(probe, await stack.ip('gateway', 'edge'), 443), 'connected', 'positive control: the probe reaches an open port');
    for (const port of [22, 2222, 6379, 8080, 8443, 9464]) {
      // Refused, not merely "not connected": the broker's own kernel answered with a reset,
      // so the address is reached and nothing listens there.
      assert.equal(await tcpProbe(probe, brokerIp, port), 'refused', `broker ${brokerIp}:${port}`);
    }
  });

  it('keeps a stored record across a restart of the core container', async () => {
    const created = await api.post('notes', { title: 'durable' }, token);
    assert.equal(created.status, 201, created.text);
    const id = (created.json as { id: string }).id;
    await stack.container('core').restart();
    await stack.waitHealthy('core');
    const read = await waitFor('the record after the core restart', async () => {
      const res = await api.get('notes', id, token);
      return res.status === 200 ? res : undefined;
    }, 60_000, 500);
    assert.deepEqual((read.json as { data: unknown }).data, { title: 'durable' });
  });

  it('runs every image as a non-root numeric user with a health check', async () => {
    for (const image of [stack.images.gateway, stack.images.broker, stack.images.core]) {
      const info = await stack.docker.getImage(image).inspect();
      assert.match(info.Config.User ?? '', /^[1-9]\d*:[1-9]\d*$/, `${image} user`);
      assert.ok(info.Config.Healthcheck?.Test?.length, `${image} has no HEALTHCHECK`);
      assert.equal(info.Config.Entrypoint?.[0], '/usr/bin/tini', `${image} PID 1`);
    }
  });

  it('leaves no key or certificate in any image history', async () => {
    for (const image of [stack.images.gateway, stack.images.broker, stack.images.core]) {
      const history = (await stack.docker.getImage(image).history()) as { CreatedBy: string }[];
      for (const layer of history) {
        assert.doesNotMatch(layer.CreatedBy, /PRIVATE KEY|BEGIN CERTIFICATE|BEGIN OPENSSH/, `${image}: ${layer.CreatedBy.slice(0, 120)}`);
      }
    }
  });
});
