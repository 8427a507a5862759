import assert from 'node:assert/strict';
import { parseGatewaysFile, type GatewayTarget } from '../../../../services/broker/config';
import { diffGatewayLists } from '../../../../services/broker/gateways/diff';
import { ConfigError } from '../../../../services/common/errors/config-error';

const OLD = 'SHA256:nv8F5hPVfcwnfHp683J2jUmsdLX5WdgFWzqC8+nabdA';
const NEW = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const OTHER = 'SHA256:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';

function parse(hostKeyFingerprint: unknown): GatewayTarget[] {
  return parseGatewaysFile('/gateways.json', JSON.stringify({ gateways: [{ id: 'gw1', host: 'gw1.example', hostKeyFingerprint, queuePasswordSha256: 'ab'.repeat(32), knock: { mode: 'static', ports: [7000, 8000, 9000] } }] }));
}

/** The gateway as the broker reads it from gateways.json, pinning these keys. */
function gw(hostKeyFingerprints: string[]): GatewayTarget {
  return parse(hostKeyFingerprints)[0]!;
}

describe('a gateway host key rotation in the broker', () => {
  describe('gateways.json hostKeyFingerprint', () => {
    it('takes one fingerprint, or a list of one or two (a rotation: new, then old), as a list', () => {
      assert.deepEqual(parse(OLD)[0]!.hostKeyFingerprints, [OLD]);
      assert.deepEqual(parse([OLD])[0]!.hostKeyFingerprints, [OLD]);
      assert.deepEqual(parse([NEW, OLD])[0]!.hostKeyFingerprints, [NEW, OLD]);
    });

    for (const [what, value, problem] of [
      ['an empty list', [], /hostKeyFingerprint: Too small/],
      ['three fingerprints', [NEW, OLD, OTHER], /hostKeyFingerprint: Invalid input/],
      ['a list with one that is not a fingerprint', [NEW, 'SHA256:short'], /hostKeyFingerprint\.1: expected an OpenSSH SHA256/],
      ['a number', 7, /hostKeyFingerprint: Invalid input/],
    ] as const) {
      it(`refuses ${what}, naming the field`, () => {
        assert.throws(
          () => parse(value),
          (err: unknown) => err instanceof ConfigError && err.problems.some((p) => problem.test(p)),
        );
      });
    }
  });

  describe('diffGatewayLists', () => {
    it('reports the steps of a rotation (a key added, the old one dropped) as host-key changes that leave the tunnel field alone', () => {
      for (const [before, after] of [
        [[OLD], [NEW, OLD]],
        [[NEW, OLD], [NEW]],
      ]) {
        const d = diffGatewayLists([gw(before!)], [gw(after!)]);
        assert.equal(d.changed.length, 1, `${before!.join(',')} → ${after!.join(',')}`);
        assert.equal(d.changed[0]!.hostKeys, true);
        assert.equal(d.changed[0]!.tunnel, false, 'a host key step must not start the tunnel over');
        assert.equal(d.changed[0]!.queueUser, false);
      }
    });

    it('sees the same keys in another order as no change', () => {
      const d = diffGatewayLists([gw([NEW, OLD])], [gw([OLD, NEW])]);
      assert.deepEqual(d.changed, []);
      assert.deepEqual(d.unchanged, ['gw1']);
    });

    it('still restarts the tunnel of a gateway that moved, whatever its host keys did', () => {
      const d = diffGatewayLists([gw([OLD])], [{ ...gw([NEW]), host: 'moved.example' }]);
      assert.equal(d.changed[0]!.tunnel, true);
      assert.equal(d.changed[0]!.hostKeys, true);
    });
  });
});
