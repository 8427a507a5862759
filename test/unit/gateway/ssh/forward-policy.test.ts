import assert from 'node:assert/strict';
import { forwardRefusal } from '../../../../services/gateway/ssh/forward-policy';

describe('forwardRefusal', () => {
  const REDIS = 16379;

  it('allows the queue port on 127.0.0.1 or localhost', () => {
    assert.equal(forwardRefusal({ bindAddr: '127.0.0.1', bindPort: REDIS }, REDIS, false), undefined);
    assert.equal(forwardRefusal({ bindAddr: 'localhost', bindPort: REDIS }, REDIS, false), undefined);
  });

  it('refuses every bind address that is not loopback by name, naming it', () => {
    for (const bindAddr of ['', '0.0.0.0', '::', '::1', '192.0.2.10', '127.0.0.2', '10.0.0.1', 'LOCALHOST', 'localhost.', ' 127.0.0.1', '127.0.0.1\n', 'example.com']) {
      const refusal = forwardRefusal({ bindAddr, bindPort: REDIS }, REDIS, false);
      assert.equal(refusal, `bind address ${JSON.stringify(bindAddr)} is not loopback`);
    }
  });

  it('refuses any port other than the queue port', () => {
    for (const bindPort of [0, 22, REDIS - 1, REDIS + 1, 6379, 65535]) {
      assert.equal(forwardRefusal({ bindAddr: '127.0.0.1', bindPort }, REDIS, false), `port ${bindPort} is not the queue port`);
    }
  });

  it('refuses a second forward on the same connection, even a valid one', () => {
    assert.equal(forwardRefusal({ bindAddr: '127.0.0.1', bindPort: REDIS }, REDIS, true), 'one forward per connection');
  });
});
