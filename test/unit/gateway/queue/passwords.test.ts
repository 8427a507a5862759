import assert from 'node:assert/strict';
import { ConfigError } from '../../../../services/common/errors/config-error';
import { passwordsFrom } from '../../../../services/gateway/queue/passwords';

describe('passwordsFrom (the gateway queue passwords to try, best first)', () => {
  it('tries the current password alone when there is no previous file', () => {
    assert.deepEqual(passwordsFrom('/p', 'new\n', undefined), ['new']);
  });

  it('tries the current password first, then the previous one, during a rotation', () => {
    assert.deepEqual(passwordsFrom('/p', ' new \n', 'old\n'), ['new', 'old']);
  });

  it('ignores a previous file that is empty or holds the current password', () => {
    assert.deepEqual(passwordsFrom('/p', 'new', '\n'), ['new']);
    assert.deepEqual(passwordsFrom('/p', 'new', 'new\n'), ['new']);
  });

  it('refuses an empty current file, naming it', () => {
    assert.throws(() => passwordsFrom('/etc/q', ' \n', 'old'), (err: unknown) => err instanceof ConfigError && /QUEUE_PASSWORD_FILE="\/etc\/q": file is empty/.test(err.message));
  });
});
