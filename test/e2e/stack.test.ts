import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ApiClient, createToken } from '../support/stack/api-client';
import { countRecords } from '../support/stack/core-db';
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

  describe('listing and erasing through the chain', () => {
    interface Listed {
      id: string;
      createdAt: string;
      data?: unknown;
    }
    interface Page {
      records: Listed[];
      nextCursor: string | null;
    }
    let full: string;

    before(async () => {
      full = await createToken(stack, ['notes'], 'read,write,delete');
    });

    const store = async (record: Record<string, unknown>): Promise<string> => {
      const res = await api.post('notes', record, full);
      assert.equal(res.status, 201, res.text);
      return (res.json as { id: string }).id;
    };

    const listAll = async (query: string): Promise<{ ids: string[]; records: Listed[]; pages: number }> => {
      const records: Listed[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await api.send('GET', `/v1/records/notes?${query}${cursor ? `&cursor=${cursor}` : ''}`, { token: full });
        assert.equal(res.status, 200, res.text);
        const page = res.json as Page;
        records.push(...page.records);
        cursor = page.nextCursor;
        pages++;
      } while (cursor && pages < 500);
      return { ids: records.map((r) => r.id), records, pages };
    };

    it('pages through a collection in order without duplicates or gaps while writes continue', async () => {
      const before: string[] = [];
      for (let i = 0; i < 25; i++) before.push(await store({ title: `listed ${i}` }));
      // Writes keep landing while the client pages.
      let writing = true;
      const written: string[] = [];
      const writer = (async () => {
        while (writing) written.push(await store({ title: 'while listing' }));
      })();
      let listing: Awaited<ReturnType<typeof listAll>>;
      try {
        listing = await listAll('limit=7');
      } finally {
        writing = false;
        await writer;
      }
      assert.ok(listing.pages >= 4, `${listing.pages} pages`);
      assert.equal(new Set(listing.ids).size, listing.ids.length, 'a record was listed twice');
      assert.deepEqual(before.filter((id) => !listing.ids.includes(id)), [], 'records stored before listing began are missing');
      const order = listing.records.map((r) => `${r.createdAt} ${r.id}`);
      assert.deepEqual(order, [...order].sort(), 'not in (createdAt, id) order');
      // Positive control: writes did land during the listing.
      assert.ok(written.length >= 2, `only ${written.length} writes during the listing`);
    });

    it('filters by createdFrom (inclusive) and createdTo (exclusive)', async () => {
      const mine: { id: string; at: string }[] = [];
      for (let i = 0; i < 5; i++) {
        const id = await store({ title: `ranged ${i}` });
        const read = await api.get('notes', id, full);
        mine.push({ id, at: (read.json as { createdAt: string }).createdAt });
      }
      const from = mine[1]!.at;
      const to = mine[3]!.at;
      const { ids } = await listAll(`createdFrom=${encodeURIComponent(from)}&createdTo=${encodeURIComponent(to)}&limit=2`);
      const expected = mine.filter((r) => r.at >= from && r.at < to).map((r) => r.id);
      assert.ok(expected.includes(mine[1]!.id) && !expected.includes(mine[3]!.id), JSON.stringify(mine));
      assert.deepEqual(ids.filter((id) => mine.some((r) => r.id === id)), expected);
    });

    it('answers 403 to a token without the read scope for a list and without the delete scope for an erase', async () => {
      const id = await store({ title: 'scoped' });
      const writeOnly = await createToken(stack, ['notes'], 'write');
      const readOnly = await createToken(stack, ['notes'], 'read');
      const deleteOnly = await createToken(stack, ['notes'], 'delete');
      for (const token of [writeOnly, deleteOnly]) {
        const res = await api.send('GET', '/v1/records/notes', { token });
        assert.equal(res.status, 403, res.text);
        assert.equal((res.json as { error: { code: string } }).error.code, 'forbidden');
      }
      for (const token of [readOnly, writeOnly]) {
        const res = await api.send('DELETE', `/v1/records/notes/${id}`, { token });
        assert.equal(res.status, 403, res.text);
      }
      assert.equal((await api.get('notes', id, full)).status, 200, 'a refused erase erased the record');
      // Positive controls: the same tokens do what their scopes grant.
      assert.equal((await api.send('GET', '/v1/records/notes?limit=1', { token: readOnly })).status, 200);
      assert.equal((await api.send('DELETE', `/v1/records/notes/${id}`, { token: deleteOnly })).status, 200);
    });

    it('erases a record: GET is then 404, and every DELETE of it, or of an id never stored, answers the same', async () => {
      const id = await store({ title: 'to erase' });
      assert.equal((await api.get('notes', id, full)).status, 200);
      const answers = [];
      for (let i = 0; i < 2; i++) {
        const res = await api.send('DELETE', `/v1/records/notes/${id}`, { token: full });
        answers.push([res.status, res.json]);
      }
      assert.deepEqual(answers, [
        [200, { id, erased: true }],
        [200, { id, erased: true }],
      ]);
      const read = await api.get('notes', id, full);
      assert.equal(read.status, 404, read.text);
      assert.equal((read.json as { error: { code: string } }).error.code, 'not_found');
      const never = '00000000-0000-4000-8000-000000000000';
      const other = await api.send('DELETE', `/v1/records/notes/${never}`, { token: full });
      assert.deepEqual([other.status, other.json], [200, { id: never, erased: true }]);
      assert.equal(await countRecords(stack, { _id: id }), 0, 'the record is still in core');
    });

    it("logs no token, cursor or record content in any tier while listing and erasing, where core's log holds the erase's audit line (positive control)", async () => {
      const canary = `canary-${randomBytes(12).toString('hex')}`;
      const id = await store({ title: canary, body: canary });
      await store({ title: 'so that the first page has a next one' });
      const first = await api.send('GET', '/v1/records/notes?limit=1', { token: full });
      const cursor = (first.json as Page).nextCursor;
      assert.equal(typeof cursor, 'string');
      assert.equal((await api.send('GET', `/v1/records/notes?limit=100&cursor=${cursor!}`, { token: full })).status, 200);
      assert.equal((await api.send('GET', `/v1/records/notes?cursor=${Buffer.from('{"$gt":""}').toString('base64url')}`, { token: full })).status, 400);
      assert.equal((await api.send('DELETE', `/v1/records/notes/${id}`, { token: full })).status, 200);
      const secret = full.slice(full.lastIndexOf('_') + 1);
      // Docker copies a container's output into its log on its own time: read the logs once
      // core's audit line for the erase is there, so the searches below see everything logged.
      const audited = (text: string): boolean => text.split('\n').some((line) => line.includes('record erased') && line.includes(id));
      await waitFor("core's audit line for the erase", async () => audited(await stack.logs('core')), 20_000, 200).catch(() => undefined);
      const logs = Object.fromEntries(await Promise.all(['gateway', 'broker', 'core'].map(async (s) => [s, await stack.logs(s)] as const)));
      assert.ok(audited(logs.core!), "core's log has no audit line for the erase: the search would not see a line that is there");
      for (const [service, text] of Object.entries(logs)) {
        for (const [what, needle] of [['the token', secret], ['a cursor', cursor!], ['record content', canary]] as const) {
          assert.ok(!text.includes(needle), `${service} logged ${what}`);
        }
      }
    });
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
