import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './tmp';

/**
 * The smallest environment the gateway's configuration accepts (a static knock and a queue
 * password file), fresh for each test of the calling `describe`: call it there, and read
 * the environment through the returned function inside the tests.
 */
export function minimalGatewayEnv(): () => NodeJS.ProcessEnv {
  let tmp: ReturnType<typeof tempDir> | undefined;
  let env: NodeJS.ProcessEnv = {};
  beforeEach(() => {
    tmp = tempDir();
    const password = join(tmp.dir, 'queue.password');
    writeFileSync(password, 'a-queue-password\n');
    env = { KNOCK_MODE: 'static', KNOCK_SEQUENCE: '7000,8000,9000', QUEUE_PASSWORD_FILE: password };
  });
  afterEach(() => tmp?.cleanup());
  return () => env;
}
