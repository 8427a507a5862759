import assert from 'node:assert/strict';
import { AddressPatternError, addressPermitted, matchWildcard, parseAddressPatternList } from '../../../../services/common/ssh/address-patterns';

const permitted = (list: string, address: string): boolean => addressPermitted(parseAddressPatternList(list), address);

describe('from= pattern lists (OpenSSH match_host_and_ip without DNS)', () => {
  it('matches an IPv4 address exactly, and CIDR networks by their mask', () => {
    assert.equal(permitted('192.0.2.7', '192.0.2.7'), true);
    assert.equal(permitted('192.0.2.7', '192.0.2.8'), false);
    assert.equal(permitted('192.0.2.0/24', '192.0.2.255'), true);
    assert.equal(permitted('192.0.2.0/24', '192.0.3.0'), false);
    assert.equal(permitted('10.0.0.0/8', '10.255.1.2'), true);
    assert.equal(permitted('0.0.0.0/0', '203.0.113.9'), true);
    assert.equal(permitted('192.0.2.6/31', '192.0.2.7'), true);
    assert.equal(permitted('192.0.2.6/31', '192.0.2.8'), false);
  });

  it('matches IPv6 addresses and networks whatever their written form, and never across families', () => {
    assert.equal(permitted('2001:db8::/32', '2001:db8:1:2::3'), true);
    assert.equal(permitted('2001:DB8:0:0::/64', '2001:db8::1'), true);
    assert.equal(permitted('2001:db8::/64', '2001:db8:0:1::1'), false);
    assert.equal(permitted('::1', '::1'), true);
    assert.equal(permitted('::ffff:192.0.2.0/120', '::ffff:192.0.2.9'), true);
    assert.equal(permitted('0.0.0.0/0', '2001:db8::1'), false);
    assert.equal(permitted('::/0', '192.0.2.1'), false);
  });

  it('matches wildcard entries against the address text', () => {
    assert.equal(permitted('192.0.2.*', '192.0.2.44'), true);
    assert.equal(permitted('192.0.2.?', '192.0.2.4'), true);
    assert.equal(permitted('192.0.2.?', '192.0.2.44'), false);
    assert.equal(permitted('*', '2001:db8::1'), true);
    assert.equal(permitted('2001:DB8:*', '2001:db8::1'), true);
    // A host name pattern can only ever meet an address here (no reverse DNS, UseDNS no).
    assert.equal(permitted('*.example.com', '192.0.2.1'), false);
  });

  it('refuses an address any negated entry matches, whatever else matches, and needs one positive match', () => {
    assert.equal(permitted('10.0.0.0/8,!10.0.0.1', '10.0.0.1'), false);
    assert.equal(permitted('!10.0.0.1,10.0.0.0/8', '10.0.0.1'), false);
    assert.equal(permitted('10.0.0.0/8,!10.0.0.1', '10.0.0.2'), true);
    assert.equal(permitted('*,!192.0.2.*', '192.0.2.1'), false);
    assert.equal(permitted('*,!192.0.2.*', '198.51.100.1'), true);
    // Only negations: nothing positive matched, so nobody (OpenSSH's semantics).
    assert.equal(permitted('!10.0.0.1', '10.0.0.2'), false);
    assert.equal(permitted('!2001:db8::/32,::/0', '2001:db8::5'), false);
  });

  it('refuses, when read, lists OpenSSH could never match or would read differently', () => {
    for (const bad of ['', '10.0.0.1,', ',10.0.0.1', '!', '10.0.0.1/33', '10.0.0.1/8', '2001:db8::1/64', '::/129', '10.0.0.0/x', '127.1', '010.0.0.1', '0x7f.0.0.1', '10.0.0.256', 'fe80::1%eth0', '1:2:3']) {
      assert.throws(() => parseAddressPatternList(bad), AddressPatternError, bad);
    }
  });

  it('matches wildcards in linear time, like match.c', () => {
    assert.equal(matchWildcard('a'.repeat(5000), `${'*a'.repeat(50)}b`), false);
    assert.equal(matchWildcard('abc', 'a*c'), true);
    assert.equal(matchWildcard('', ''), true);
    assert.equal(matchWildcard('', '*'), true);
    assert.equal(matchWildcard('x', ''), false);
  });
});
