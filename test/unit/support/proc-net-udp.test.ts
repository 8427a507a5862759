import assert from 'node:assert/strict';
import { beyondLoopback, parseProcNetUdp, ProcNetUdpError } from '../../support/proc-net-udp';

// Lines as a Linux 6.x kernel printed them for sockets made on purpose: udp4 on 0.0.0.0,
// udp4 connected from 127.0.0.1 to Docker's resolver 127.0.0.11:53, udp6 on fd00::2 and ::1.
const UDP4 = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
 8353: 00000000:C1EA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3050574 2 00000000538f3018 0       
16002: 0100007F:9FCB 0B00007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 3050576 2 000000000d65275b 0       
`;
const UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13616: 000000FD000000000000000002000000:9679 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3050577 2 000000004f1b2867 0
16167: 00000000000000000000000001000000:E070 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3050575 2 000000005d3fe9d2 0
  170: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3050578 2 000000005d3fe9d3 0
  171: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3050579 2 000000005d3fe9d4 0
`;

describe('parseProcNetUdp', () => {
  it('reads IPv4 sockets: the wildcard listener beyond loopback, the connected loopback client not', () => {
    const sockets = parseProcNetUdp(UDP4, 4);
    assert.deepEqual(sockets, [
      { family: 4, address: '0.0.0.0', port: 0xc1ea, remoteAddress: '0.0.0.0', remotePort: 0, state: 7 },
      { family: 4, address: '127.0.0.1', port: 0x9fcb, remoteAddress: '127.0.0.11', remotePort: 53, state: 1 },
    ]);
    assert.deepEqual(beyondLoopback(sockets).map((s) => `${s.address}:${s.port}`), ['0.0.0.0:49642']);
  });

  it('reads IPv6 sockets, word by word in host order, with ::1 and IPv4-mapped loopback as loopback', () => {
    const sockets = parseProcNetUdp(UDP6, 6);
    assert.deepEqual(
      sockets.map((s) => `[${s.address}]:${s.port}`),
      ['[fd00::2]:38521', '[::1]:57456', '[::ffff:127.0.0.1]:53', '[::]:8080'],
    );
    assert.deepEqual(beyondLoopback(sockets).map((s) => s.address), ['fd00::2', '::']);
  });

  it('reads an empty table as no sockets, and refuses text that is not the table', () => {
    assert.deepEqual(parseProcNetUdp(UDP4.split('\n')[0]!, 4), []);
    assert.throws(() => parseProcNetUdp('', 4), ProcNetUdpError);
    assert.throws(() => parseProcNetUdp('cat: /proc/net/udp: No such file or directory', 4), ProcNetUdpError);
    // An IPv6 table read as IPv4 (or a line cut short) does not parse.
    assert.throws(() => parseProcNetUdp(UDP6, 4), ProcNetUdpError);
    assert.throws(() => parseProcNetUdp(`${UDP4}  9: 0100007F:9FCB\n`, 4), ProcNetUdpError);
  });
});
