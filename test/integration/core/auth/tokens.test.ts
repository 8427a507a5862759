import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../../../../services/common/errors/api-error';
import { TokenStore } from '../../../../services/core/auth/tokens';
import { startScratchDatabase, type TestDatabase } from '../../../support/core-fixtures';

const TOKEN_FORMAT = /^nst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

function apiError(status: number, code: string) {
  return (err: unknown): boolean => err instanceof ApiError && err.status === status && err.code === code;
}

/** Every file under `dir`, concatenated (the SQLite database, its WAL, the state file...). */
function allBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) parts.push(allBytes(p));
    else parts.push(readFileSync(p));
  }
  return Buffer.concat(parts);
}

describe('core TokenStore on FerretDB', function () {
  this.timeout(30_000);
  let database: TestDatabase & { dataDir: string; cleanup: () => Promise<void> };
  let tokens: TokenStore;

  before(async () => {
    database = await startScratchDatabase();
    tokens = new TokenStore(database.db);
  });

  after(async () => {
    await database?.cleanup();
  });

  it('creates tokens of the form nst_<16 hex id>_<43 base64url secret>, each different', async () => {
    const a = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    const b = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    assert.match(a.token, TOKEN_FORMAT);
    assert.equal(a.token.slice(4, 20), a.id);
    assert.notEqual(a.token, b.token);
    assert.notEqual(a.id, b.id);
  });

  it('stores only the SHA-256 of the token, never the token or its secret', async () => {
    const { id, token } = await tokens.create({ collections: ['notes'], scopes: ['read', 'write'], label: 'ci' });
    const secret = token.slice(21);
    const hash = createHash('sha256').update(token).digest('hex');
    const doc = await database.db.collection('tokens').findOne({ _id: id as never });
    assert.ok(doc);
    assert.equal(doc.hash, hash);
    const everything = JSON.stringify(await database.db.collection('tokens').find({}).toArray());
    assert.ok(everything.includes(hash));
    assert.ok(!everything.includes(token));
    assert.ok(!everything.includes(secret));
    // Nor anywhere on disk (database files and WAL): the hash is there, the secret is not.
    const disk = allBytes(database.dataDir);
    assert.ok(disk.includes(hash), 'the stored hash should be found on disk');
    assert.ok(!disk.includes(secret));
  });

  it('authorizes a token for a granted collection and scope', async () => {
    const { id, token } = await tokens.create({ collections: ['notes', 'orders'], scopes: ['read', 'write'] });
    assert.deepEqual(await tokens.authorize(token, 'orders', 'write'), { id, client: id, collections: ['notes', 'orders'], scopes: ['read', 'write'] });
    assert.equal((await tokens.authorize(token, 'notes', 'read')).id, id);
  });

  it('authorizes a token whose expiry is still ahead', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'], expiresAt: new Date(Date.now() + 3_600_000) });
    assert.equal((await tokens.authorize(token, 'notes', 'read')).collections[0], 'notes');
  });

  it('refuses a revoked token with 401', async () => {
    const { id, token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    await tokens.authorize(token, 'notes', 'read');
    assert.equal(await tokens.revoke(id), true);
    await assert.rejects(tokens.authorize(token, 'notes', 'read'), apiError(401, 'unauthenticated'));
  });

  it('refuses an expired token with 401', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'], expiresAt: new Date(Date.now() - 1000) });
    await assert.rejects(tokens.authorize(token, 'notes', 'read'), apiError(401, 'unauthenticated'));
  });

  it('refuses a collection the token does not grant with 403', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read', 'write'] });
    await assert.rejects(tokens.authorize(token, 'orders', 'read'), apiError(403, 'forbidden'));
  });

  it('refuses a write with a read-only token with 403', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    await assert.rejects(tokens.authorize(token, 'notes', 'write'), apiError(403, 'forbidden'));
    assert.equal((await tokens.authorize(token, 'notes', 'read')).scopes[0], 'read');
  });

  it('refuses a well-formed token whose id is unknown with 401', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    const unknown = `nst_${'0'.repeat(16)}${token.slice(20)}`;
    await assert.rejects(tokens.authorize(unknown, 'notes', 'read'), apiError(401, 'unauthenticated'));
  });

  it('refuses a known id with a wrong secret with 401', async () => {
    const { token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    const last = token.at(-1) === 'A' ? 'B' : 'A';
    await assert.rejects(tokens.authorize(token.slice(0, -1) + last, 'notes', 'read'), apiError(401, 'unauthenticated'));
    await assert.rejects(tokens.authorize(`${token.slice(0, 21)}${'x'.repeat(43)}`, 'notes', 'read'), apiError(401, 'unauthenticated'));
  });

  it('refuses strings that are not shaped like tokens with 401', async () => {
    const { id } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    for (const bad of ['', 'nst_', `nst_${id}_`, `nst_${id}_${'$'.repeat(43)}`, `nst_${id}_"x"`, '{"$gt":""}']) {
      await assert.rejects(tokens.authorize(bad, 'notes', 'read'), apiError(401, 'unauthenticated'), bad);
    }
  });

  it('reports false when revoking an unknown, malformed or already revoked id', async () => {
    const { id } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    assert.equal(await tokens.revoke('0000000000000000'), false);
    assert.equal(await tokens.revoke('{"$ne":null}'), false);
    assert.equal(await tokens.revoke(id), true);
    assert.equal(await tokens.revoke(id), false);
  });

  it('grants a named client identity, and a token created without one is its own client', async () => {
    const named = await tokens.create({ collections: ['notes'], scopes: ['write'], client: 'billing-app' });
    assert.equal(named.client, 'billing-app');
    assert.equal((await tokens.authorize(named.token, 'notes', 'write')).client, 'billing-app');
    const unnamed = await tokens.create({ collections: ['notes'], scopes: ['write'] });
    assert.equal((await tokens.authorize(unnamed.token, 'notes', 'write')).client, unnamed.id);
  });

  it('uses the token id as the client of a token stored before clients existed', async () => {
    const { id, token } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    await database.db.collection('tokens').updateOne({ _id: id as never }, { $unset: { client: '' } });
    assert.equal((await tokens.authorize(token, 'notes', 'read')).client, id);
  });

  it('refuses client names that are malformed or shaped like a token id, creating nothing', async () => {
    const before = await database.db.collection('tokens').countDocuments({});
    for (const client of ['', '-lead', 'has space', 'a/b', 'x'.repeat(65), '0123456789abcdef', 'n\0ul']) {
      await assert.rejects(tokens.create({ collections: ['notes'], scopes: ['read'], client }), apiError(400, 'bad_request'), JSON.stringify(client));
    }
    assert.equal(await database.db.collection('tokens').countDocuments({}), before);
    assert.equal((await tokens.create({ collections: ['notes'], scopes: ['read'], client: 'A.b_c-9' })).client, 'A.b_c-9');
  });

  it('rotates a token into a new one with the same client, collections, scopes and label, leaving the old one valid', async () => {
    const old = await tokens.create({ collections: ['notes', 'orders'], scopes: ['read', 'write'], client: 'rotating-app', label: 'ci', expiresAt: new Date(Date.now() + 60_000) });
    const next = await tokens.rotate(old.id);
    assert.ok(next);
    assert.match(next.token, TOKEN_FORMAT);
    assert.notEqual(next.id, old.id);
    assert.deepEqual(await tokens.authorize(next.token, 'orders', 'write'), { id: next.id, client: 'rotating-app', collections: ['notes', 'orders'], scopes: ['read', 'write'] });
    const doc = await database.db.collection('tokens').findOne({ _id: next.id as never });
    assert.equal(doc?.label, 'ci');
    assert.equal(doc?.expiresAt, undefined);
    assert.equal((await tokens.authorize(old.token, 'notes', 'read')).client, 'rotating-app');
  });

  it('rotates a token without a client into one whose client is the old token id', async () => {
    const old = await tokens.create({ collections: ['notes'], scopes: ['write'] });
    await database.db.collection('tokens').updateOne({ _id: old.id as never }, { $unset: { client: '' } });
    const next = await tokens.rotate(old.id);
    assert.ok(next);
    assert.equal(next.client, old.id);
    assert.equal((await tokens.authorize(next.token, 'notes', 'write')).client, old.id);
  });

  it('does not rotate a revoked, unknown or malformed token id', async () => {
    const { id } = await tokens.create({ collections: ['notes'], scopes: ['read'] });
    assert.ok(await tokens.revoke(id));
    const before = await database.db.collection('tokens').countDocuments({});
    for (const bad of [id, '0000000000000000', '{"$ne":null}']) assert.equal(await tokens.rotate(bad), undefined, bad);
    assert.equal(await database.db.collection('tokens').countDocuments({}), before);
  });

  it('lists tokens without their hashes', async () => {
    const { id } = await tokens.create({ collections: ['notes'], scopes: ['read'], label: 'listed' });
    const listed = await tokens.list();
    const mine = listed.find((t) => t._id === id);
    assert.equal(mine?.label, 'listed');
    assert.ok(listed.every((t) => !('hash' in t)));
  });
});
