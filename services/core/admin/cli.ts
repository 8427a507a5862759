import { ConfigError } from '../../common/errors/config-error';
import { isNonstopError } from '../../common/errors/nonstop-error';
import { TokenChangeNotSignalledError } from '../auth/change-not-signalled-error';
import { TokenGeneration, tokenGenerationPath } from '../auth/token-generation';
import { DEFAULT_GRANT_CACHE, TokenStore } from '../auth/tokens';
import { loadDataKeysFile, loadDbConfig, loadRunDir } from '../config';
import { connectClient, ensureDbPassword } from '../db/database';
import { DB_NAME } from '../db/engine';
import { parseCollections, parseDuration, parseFlags, parseRotate, parseScopes, USAGE, UsageError } from './args';
import { KeyCommandRefusedError, keysCommand } from './keys';
import { BackupRefusedError } from '../backup/backup-refused-error';
import { backupCommand, EXIT_REFUSED, restoreCommand } from './backup';
import { KeyFileBusyError } from './data-key-file';

/**
 * Exit status when a revocation is stored but the running service could not be told: it
 * takes effect within the grant cache's maximum age instead of on the next request.
 */
const EXIT_NOT_SIGNALLED = 3;

/**
 * The operator's tool inside the core image (`docker compose exec core nonstop-admin ...`).
 * `token create` and `token rotate` print the token alone on stdout — the only time it is
 * ever shown — so it can be captured with `$(...)`; everything else goes to stderr.
 * A revocation is signalled to the service through the generation file in RUN_DIR, which
 * this process shares with it inside the container, so it holds from the next request on.
 * `keys ...` (keys.ts) rotates the key-encryption keys in CORE_DATA_KEYS_FILE, which core
 * mounts read-only: those commands run in a container that mounts the key volume writable
 * and shares core's network namespace (README); inside core they exit 2 naming the file.
 * `backup` and `restore` (backup.ts) only read the key file, and run inside core; a refused
 * restore (damaged or foreign file, a core that holds records) exits 1 having written nothing.
 */
async function main(argv: string[]): Promise<number> {
  const [noun, verb, ...rest] = argv;
  if (noun === 'backup' || noun === 'restore') {
    const cfg = loadDbConfig();
    const keysFile = loadDataKeysFile();
    const client = connectClient(cfg, ensureDbPassword(cfg));
    try {
      return await (noun === 'backup' ? backupCommand : restoreCommand)(argv.slice(1), client.db(DB_NAME), keysFile);
    } finally {
      await client.close();
    }
  }
  if ((noun !== 'token' && noun !== 'keys') || verb === undefined) throw new UsageError('expected a command');
  const cfg = loadDbConfig();
  if (noun === 'keys') {
    const keysFile = loadDataKeysFile();
    const client = connectClient(cfg, ensureDbPassword(cfg));
    try {
      return await keysCommand(verb, rest, client.db(DB_NAME), keysFile);
    } finally {
      await client.close();
    }
  }
  const generation = new TokenGeneration(tokenGenerationPath(loadRunDir()));
  const client = connectClient(cfg, ensureDbPassword(cfg));
  try {
    const tokens = new TokenStore(client.db(DB_NAME), { generation });
    if (verb === 'create') {
      const flags = parseFlags(rest);
      const collections = parseCollections(flags.get('collections'));
      const scopes = parseScopes(flags.get('scopes') ?? 'read,write');
      const expiresIn = flags.get('expires-in');
      const label = flags.get('label');
      const client = flags.get('client');
      for (const name of flags.keys()) if (!['collections', 'scopes', 'expires-in', 'label', 'client'].includes(name)) throw new UsageError(`token create does not take --${name}`);
      const created = await tokens.create({
        collections,
        scopes,
        ...(client !== undefined ? { client } : {}),
        ...(expiresIn ? { expiresAt: new Date(Date.now() + parseDuration(expiresIn)) } : {}),
        ...(label ? { label } : {}),
      });
      process.stderr.write(`created token ${created.id} for client ${created.client} (shown once; store it now)\n`);
      process.stdout.write(`${created.token}\n`);
      return 0;
    }
    if (verb === 'rotate') {
      const { id, revokeOld, expiresInMs } = parseRotate(rest);
      const created = await tokens.rotate(id, expiresInMs !== undefined ? { expiresAt: new Date(Date.now() + expiresInMs) } : {});
      if (!created) {
        process.stderr.write(`no active token with id ${id}\n`);
        return 1;
      }
      // Shown before the old one is revoked: a failure there must not lose the new token.
      process.stderr.write(`created token ${created.id} for client ${created.client}, replacing ${id} (shown once; store it now)\n`);
      process.stdout.write(`${created.token}\n`);
      if (revokeOld) {
        // False only if someone revoked it since: it is revoked either way.
        await tokens.revoke(id);
        process.stderr.write(`revoked ${id}\n`);
      }
      return 0;
    }
    if (verb === 'list') {
      for (const t of await tokens.list()) process.stdout.write(`${JSON.stringify(t)}\n`);
      return 0;
    }
    if (verb === 'revoke') {
      const id = rest[0];
      if (!id || rest.length !== 1) throw new UsageError('token revoke takes one token id');
      if (!(await tokens.revoke(id))) {
        process.stderr.write(`no active token with id ${id}\n`);
        return 1;
      }
      process.stderr.write(`revoked ${id}\n`);
      return 0;
    }
    throw new UsageError(`unknown command token ${verb}`);
  } finally {
    await client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof TokenChangeNotSignalledError) {
      process.stderr.write(
        `nonstop-admin: ${err.message}: a core service running with its grant cache may accept the token for up to ${DEFAULT_GRANT_CACHE.maxAgeMs / 1000} s more. ` +
          `Run nonstop-admin inside the core container (docker compose exec core ...), where RUN_DIR is the service's.\n`,
      );
      process.exit(EXIT_NOT_SIGNALLED);
    }
    if (err instanceof BackupRefusedError) {
      process.stderr.write(`nonstop-admin: ${process.argv[2] ?? ''} refused (${err.code}): ${err.message}\n`);
      process.exit(EXIT_REFUSED);
    }
    if (err instanceof KeyCommandRefusedError || err instanceof KeyFileBusyError) {
      process.stderr.write(`nonstop-admin: ${err.message}\n`);
      process.exit(1);
    }
    if (err instanceof UsageError) process.stderr.write(`nonstop-admin: ${err.message}\n${USAGE}\n`);
    else if (err instanceof ConfigError) process.stderr.write(`nonstop-admin: config error: ${err.problems.join('; ')}\n`);
    else if (isNonstopError(err)) process.stderr.write(`nonstop-admin: ${err.message}\n`);
    else process.stderr.write(`nonstop-admin: ${(err as Error).message}\n`);
    process.exit(2);
  },
);
