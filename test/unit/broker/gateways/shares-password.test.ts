import assert from 'node:assert/strict';
import { parseGatewaysFile, type GatewayTarget } from '../../../../services/broker/config';
import { diffGatewayLists, sharesPassword } from '../../../../services/broker/gateways/diff';

const [A, B, C] = ['aa', 'bb', 'cc'].map((x) => x.repeat(32)) as [string, string, string];

/** A gateway entry as the broker reads it from gateways.json, with these password hashes. */
function gw(hashes: string[]): GatewayTarget {
  const entry = { id: 'gw1', host: 'gw1.example', hostKeyFingerprint: 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA', queuePasswordSha256: hashes, knock: { mode: 'static', ports: [7000, 8000, 9000] } };
  return parseGatewaysFile('/gateways.json', JSON.stringify({ gateways: [entry] }))[0]!;
}

describe('queue password hashes in the gateway list diff (rotation with overlap)', () => {
  it('sees a rotate (hash added) and a retire (hash removed) as queue-user changes that share a password: connections kept', () => {
    for (const [before, after] of [
      [[A], [B, A]],
      [[B, A], [B]],
    ]) {
      const d = diffGatewayLists([gw(before!)], [gw(after!)]);
      assert.equal(d.changed.length, 1, JSON.stringify([before, after]));
      assert.equal(d.changed[0]!.queueUser, true);
      assert.equal(sharesPassword(d.changed[0]!.before, d.changed[0]!.after), true);
    }
  });

  it('sees passwords replaced without overlap as not sharing one: connections cut', () => {
    assert.equal(sharesPassword(gw([A]), gw([B])), false);
    assert.equal(sharesPassword(gw([A, B]), gw([C])), false);
  });

  it('compares the hashes as a set: the same two in another order are no change', () => {
    assert.equal(diffGatewayLists([gw([A, B])], [gw([B, A])]).changed.length, 0);
  });
});
