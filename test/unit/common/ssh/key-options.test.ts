import assert from 'node:assert/strict';
import { KeyOptionsError, keyRefusal, listenRefusal, parseExpiryTime, parseKeyOptions } from '../../../../services/common/ssh/key-options';

describe('authorized_keys options (OpenSSH sshauthopt_parse)', () => {
  it('reads restrict, then flags in order: port-forwarding turns -R back on', () => {
    const o = parseKeyOptions('restrict,port-forwarding');
    assert.deepEqual([o.portForwarding, o.agentForwarding, o.x11Forwarding, o.pty, o.userRc], [true, false, false, false, false]);
    assert.equal(parseKeyOptions('port-forwarding,restrict').portForwarding, false);
    assert.equal(parseKeyOptions('no-port-forwarding').portForwarding, false);
    assert.equal(parseKeyOptions('NO-PTY,Restrict').pty, false);
  });

  it('reads from=, expiry-time= and several permitlisten= with quotes and escaped quotes', () => {
    const o = parseKeyOptions('from="10.0.0.0/8,!10.0.0.1",expiry-time="20300101Z",permitlisten="127.0.0.1:6379",permitlisten="[::1]:6379",permitlisten="7000",permitlisten="localhost:*"');
    assert.equal(o.from?.text, '10.0.0.0/8,!10.0.0.1');
    assert.equal(o.expiresAt, Date.UTC(2030, 0, 1) / 1000);
    assert.deepEqual(o.permitListen, [
      { host: '127.0.0.1', port: 6379 },
      { host: '::1', port: 6379 },
      { host: '*', port: 7000 },
      { host: 'localhost', port: undefined },
    ]);
    assert.equal(parseKeyOptions('from="a\\"b"').from?.text, 'a"b');
  });

  it('keeps the earliest of several expiry-times', () => {
    assert.equal(parseKeyOptions('expiry-time="20300101Z",expiry-time="20290101Z",expiry-time="20310101Z"').expiresAt, Date.UTC(2029, 0, 1) / 1000);
  });

  it('refuses options it cannot honour, unknown ones and broken syntax, never ignoring them', () => {
    for (const bad of [
      'command="echo hi"',
      'environment="A=b"',
      'permitopen="127.0.0.1:22"',
      'principals="x"',
      'cert-authority',
      'tunnel="1"',
      'no-touch-required',
      'verify-required',
      'bogus',
      'no-restrict',
      'restrict,',
      ',restrict',
      'restrict,,pty',
      'from=10.0.0.1',
      'from="10.0.0.1',
      'from="10.0.0.1"x',
      'from="10.0.0.1",from="10.0.0.2"',
      'from=""',
      'from="10.0.0.1/8"',
      'expiry-time="2030"',
      'expiry-time="20301301Z"',
      'expiry-time="19700101Z"',
      'permitlisten="127.0.0.1:0"',
      'permitlisten="127.0.0.1:70000"',
      'permitlisten=":6379"',
      'permitlisten="[::1]6379"',
      'pty"',
    ]) {
      assert.throws(() => parseKeyOptions(bad), KeyOptionsError, bad);
    }
  });

  it('reads expiry times as OpenSSH does: UTC with Z or UTC, local time without', () => {
    assert.equal(parseExpiryTime('20250102Z'), Date.UTC(2025, 0, 2) / 1000);
    assert.equal(parseExpiryTime('202501021530UTC'), Date.UTC(2025, 0, 2, 15, 30) / 1000);
    assert.equal(parseExpiryTime('20250102153045z'), Date.UTC(2025, 0, 2, 15, 30, 45) / 1000);
    assert.equal(parseExpiryTime('202501021530'), new Date(2025, 0, 2, 15, 30).getTime() / 1000);
  });
});

describe('keyRefusal (auth_authorise_keyopts)', () => {
  const at = (iso: string): number => Date.parse(iso);

  it('refuses a key after its expiry-time and accepts it up to that second', () => {
    const o = parseKeyOptions('expiry-time="20300101000000Z"');
    assert.equal(keyRefusal(o, '192.0.2.1', at('2030-01-01T00:00:00.999Z')), undefined);
    assert.equal(keyRefusal(o, '192.0.2.1', at('2030-01-01T00:00:01Z')), 'expired');
  });

  it('refuses a key from an address outside its from= and accepts it from inside', () => {
    const o = parseKeyOptions('from="192.0.2.0/24"');
    assert.equal(keyRefusal(o, '192.0.2.9', 0), undefined);
    assert.equal(keyRefusal(o, '198.51.100.1', 0), 'source_not_permitted');
  });

  it('refuses nothing for a key without options', () => {
    assert.equal(keyRefusal(parseKeyOptions('no-pty'), '198.51.100.1', Date.now()), undefined);
  });
});

describe('listenRefusal (channels.c remote_open_match)', () => {
  it('allows only the listed host and port, the host compared as OpenSSH does ("localhost" is not 127.0.0.1)', () => {
    const o = parseKeyOptions('permitlisten="127.0.0.1:6379"');
    assert.equal(listenRefusal(o, { bindAddr: '127.0.0.1', bindPort: 6379 }), undefined);
    assert.match(String(listenRefusal(o, { bindAddr: 'localhost', bindPort: 6379 })), /permitlisten/);
    assert.match(String(listenRefusal(o, { bindAddr: '127.0.0.1', bindPort: 6380 })), /permitlisten/);
  });

  it('matches wildcard hosts case-insensitively on the request side and * ports', () => {
    const o = parseKeyOptions('permitlisten="local*:*"');
    assert.equal(listenRefusal(o, { bindAddr: 'LocalHost', bindPort: 1 }), undefined);
    assert.equal(listenRefusal(parseKeyOptions('permitlisten="6379"'), { bindAddr: '0.0.0.0', bindPort: 6379 }), undefined);
  });

  it('refuses every forward once forwarding is off, listed or not', () => {
    assert.equal(listenRefusal(parseKeyOptions('restrict,permitlisten="127.0.0.1:6379"'), { bindAddr: '127.0.0.1', bindPort: 6379 }), 'port forwarding is off for this key');
    assert.equal(listenRefusal(parseKeyOptions('restrict,port-forwarding,permitlisten="127.0.0.1:6379"'), { bindAddr: '127.0.0.1', bindPort: 6379 }), undefined);
  });
});
