import assert from 'node:assert/strict';
import type { GatewayTarget } from '../../../../services/broker/config';
import { diffGatewayLists, isEmptyDiff } from '../../../../services/broker/gateways/diff';

const FINGERPRINT = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';

function gw(id: string, overrides: Partial<GatewayTarget> = {}): GatewayTarget {
  return {
    id,
    host: `${id}.example`,
    sshPort: 2222,
    httpsPort: 443,
    hostKeyFingerprints: [FINGERPRINT],
    queueUsername: `gateway-${id}`,
    queuePasswordSha256: ['ab'.repeat(32)],
    knock: { mode: 'time', secret: Buffer.from(`secret-of-${id}`), length: 8, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 },
    ...overrides,
  };
}

const ids = (gs: readonly { id: string }[]): string[] => gs.map((g) => g.id).sort();

describe('diffGatewayLists', () => {
  it('finds nothing to do between a list and an equal copy of it, in another order, with its secrets in new buffers', () => {
    const before = [gw('gw1'), gw('gw2')];
    const after = [gw('gw2'), gw('gw1')];
    const d = diffGatewayLists(before, after);
    assert.ok(isEmptyDiff(d));
    assert.deepEqual(d.unchanged.sort(), ['gw1', 'gw2']);
  });

  it('adds the ids only the new list has and removes the ids only the old one has', () => {
    const d = diffGatewayLists([gw('gw1'), gw('gw2')], [gw('gw1'), gw('gw3')]);
    assert.deepEqual(ids(d.added), ['gw3']);
    assert.deepEqual(ids(d.removed), ['gw2']);
    assert.deepEqual(d.changed, []);
    assert.deepEqual(d.unchanged, ['gw1']);
    assert.ok(!isEmptyDiff(d));
  });

  it('reports every gateway added when starting from none and every one removed when going to none', () => {
    assert.deepEqual(ids(diffGatewayLists([], [gw('a'), gw('b')]).added), ['a', 'b']);
    assert.deepEqual(ids(diffGatewayLists([gw('a'), gw('b')], []).removed), ['a', 'b']);
  });

  // Every field but the id, with a different value, and what it must touch: a field added to
  // GatewayTarget without a row here fails the completeness check below.
  const fieldChanges: { field: keyof GatewayTarget; value: GatewayTarget[keyof GatewayTarget]; tunnel: boolean; hostKeys?: boolean; queueUser: boolean }[] = [
    { field: 'host', value: 'elsewhere.example', tunnel: true, queueUser: false },
    { field: 'sshPort', value: 2200, tunnel: true, queueUser: false },
    { field: 'httpsPort', value: 8443, tunnel: true, queueUser: false },
    // A host key rotation's step: the tunnel is kept or replaced by the keeper, not started over.
    { field: 'hostKeyFingerprints', value: ['SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', FINGERPRINT], tunnel: false, hostKeys: true, queueUser: false },
    { field: 'knock', value: { mode: 'static', ports: [7000, 8000, 9000] }, tunnel: true, queueUser: false },
    { field: 'queueUsername', value: 'gw1-user', tunnel: false, queueUser: true },
    { field: 'queuePasswordSha256', value: ['cd'.repeat(32)], tunnel: false, queueUser: true },
  ];

  it('has a row for every field of a gateway entry', () => {
    const fields = Object.keys(gw('x')).filter((k) => k !== 'id').sort();
    assert.deepEqual(fieldChanges.map((c) => c.field).sort(), fields);
  });

  for (const c of fieldChanges) {
    it(`reports a gateway whose ${c.field} changed as changed (tunnel: ${c.tunnel}, queue user: ${c.queueUser}), neither added nor removed`, () => {
      const before = gw('gw1');
      const after: GatewayTarget = { ...gw('gw1'), [c.field]: c.value };
      const d = diffGatewayLists([before, gw('gw2')], [after, gw('gw2')]);
      assert.deepEqual(d.added, []);
      assert.deepEqual(d.removed, []);
      assert.deepEqual(d.unchanged, ['gw2']);
      assert.equal(d.changed.length, 1);
      const [changed] = d.changed;
      assert.equal(changed!.before, before);
      assert.equal(changed!.after, after);
      assert.equal(changed!.tunnel, c.tunnel);
      assert.equal(changed!.hostKeys, c.hostKeys ?? false);
      assert.equal(changed!.queueUser, c.queueUser);
    });
  }

  it('sees a knock secret whose bytes changed, though its settings did not', () => {
    const before = gw('gw1');
    const after = gw('gw1', { knock: { mode: 'time', secret: Buffer.from('a new secret'), length: 8, rangeStart: 40000, rangeEnd: 40999, periodMs: 30_000 } });
    const d = diffGatewayLists([before], [after]);
    assert.equal(d.changed.length, 1);
    assert.equal(d.changed[0]!.tunnel, true);
  });

  it('reports a gateway whose tunnel and queue user both changed once, with both flags', () => {
    const d = diffGatewayLists([gw('gw1')], [gw('gw1', { host: 'moved.example', queuePasswordSha256: ['ef'.repeat(32)] })]);
    assert.equal(d.changed.length, 1);
    assert.equal(d.changed[0]!.tunnel, true);
    assert.equal(d.changed[0]!.queueUser, true);
  });
});
