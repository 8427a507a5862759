import assert from 'node:assert/strict';
import { knockCaptureFilter } from '../../../../services/gateway/knock/filter';

describe('knockCaptureFilter', () => {
  const filter = knockCaptureFilter();

  it('captures inbound packets only', () => {
    assert.match(filter, /^inbound and \(/);
  });

  it('has an IPv4 branch for pure SYNs that excludes loopback sources', () => {
    assert.ok(filter.includes('(ip and tcp[tcpflags] & (tcp-syn|tcp-ack|tcp-rst|tcp-fin) == tcp-syn and not src net 127.0.0.0/8)'), filter);
  });

  it('has an IPv6 branch for pure SYNs (flags byte at 40 + 13, mask FIN|SYN|RST|ACK) that excludes ::1', () => {
    assert.ok(filter.includes('(ip6 and ip6[6] == 6 and ip6[53] & 0x17 == 0x02 and not src host ::1)'), filter);
  });

  it('joins the two branches with "or" under the inbound qualifier', () => {
    assert.match(filter, /^inbound and \(\(ip and .*\) or \(ip6 and .*\)\)$/);
  });

  it('does not restrict destination ports (a scan is told from a knock by its other SYNs)', () => {
    assert.doesNotMatch(filter, /port/);
  });
});
