import assert from 'node:assert/strict';
import type { BrokerRecord } from '../../../services/keygen/brokers';
import { revokedCertificates } from '../../../services/keygen/crl-file';
import { oldCaHolders } from '../../../services/keygen/rotation/tls';

describe('keygen TLS rotation: what the CRL lists and who blocks retire ca', () => {
  const at = '2026-01-01T00:00:00.000Z';

  it('lists revoked brokers, every retired client certificate and retired server certificates, once each', () => {
    const brokers: BrokerRecord[] = [
      { name: 'a', sshPublicKey: 'ssh-ed25519 AAAA a', certSerial: '0a1' },
      { name: 'b', sshPublicKey: 'ssh-ed25519 AAAA b', certSerial: 'c3', revokedAt: at },
      { name: 'c', sshPublicKey: 'ssh-ed25519 AAAA c', certSerial: 'd4' },
    ];
    const serials = revokedCertificates(
      brokers,
      [
        { serial: '0b2', role: 'client', broker: 'a', retiredAt: at },
        { serial: 'B2', role: 'client', broker: 'a', retiredAt: at },
        { serial: 'e5', role: 'server', retiredAt: at },
      ],
    );
    assert.deepEqual(serials.map((r) => r.serial.toLowerCase().replace(/^0+/, '')).sort(), ['b2', 'c3', 'e5']);
    // Each at the date it was revoked or retired, none at the epoch.
    assert.ok(serials.every((r) => r.revokedAt.toISOString() === at));
  });

  it("names the unrevoked brokers whose certificate is not the current CA's (or of unknown CA), and no other", () => {
    const holders = oldCaHolders(
      [
        { name: 'moved', sshPublicKey: 'k', certSerial: '1', caSerial: '0ABC' },
        { name: 'stayed', sshPublicKey: 'k', certSerial: '2', caSerial: 'def' },
        { name: 'unknown', sshPublicKey: 'k', certSerial: '3' },
        { name: 'revoked', sshPublicKey: 'k', certSerial: '4', caSerial: 'def', revokedAt: at },
      ],
      'abc',
    );
    assert.deepEqual(holders, ['stayed', 'unknown']);
  });
});
