import { performance } from 'node:perf_hooks';
import type { Collection, Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { isCollectionName } from '../../common/ids/names';
import type { Deadline } from '../storage/deadline';
import { readFailure } from '../storage/errors';
import { GrantCache, type GrantCacheLimits } from './grant-cache';
import { generateToken, hashMatches, tokenId } from './token-format';
import type { TokenGeneration } from './token-generation';

/** read: get and list; write: store; delete: erase. */
export type Scope = 'read' | 'write' | 'delete';

export interface TokenDoc {
  _id: string;
  hash: string;
  /**
   * Who holds the token: the identity keyed writes are stored under, shared by a token and
   * the tokens that replace it. Tokens created before clients existed have none and act
   * as their own client (their id).
   */
  client?: string;
  collections: string[];
  scopes: Scope[];
  createdAt: Date;
  expiresAt?: Date;
  revokedAt?: Date;
  label?: string;
}

export interface TokenGrant {
  id: string;
  client: string;
  collections: string[];
  scopes: Scope[];
}

/** A client name an operator may give. */
const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/**
 * A token id: the implicit client of a token created without a name. A chosen name of
 * this shape could take over that identity (and its keyed records), so it is refused.
 */
const TOKEN_ID = /^[0-9a-f]{16}$/;

export function isClientName(value: string): boolean {
  return CLIENT_NAME.test(value) && !TOKEN_ID.test(value);
}

/**
 * Enough for every token a deployment plausibly has in use at once (an entry is well under
 * a kilobyte); the age is the backstop for a change that never reached the generation file.
 */
export const DEFAULT_GRANT_CACHE: Readonly<GrantCacheLimits> = Object.freeze({ maxEntries: 10_000, maxAgeMs: 30_000 });

export interface TokenStoreOptions {
  /**
   * The generation file core and nonstop-admin share. The service's store keeps a grant
   * cache checked against it on every request; the admin tool's store moves it after every
   * change that takes access away (today: revoke; a future command that narrows a grant or
   * moves an expiry earlier must too). Without it: no cache, no signal (a database read per
   * request, as for a store that only tests or lists).
   */
  generation?: TokenGeneration;
  cache?: GrantCacheLimits;
}

/**
 * Who may do what: tokens stored hashed, each granting scopes on a list of collections,
 * optionally expiring, revocable, each held by a client that keeps its identity when its
 * token is rotated. `authorize` is the single place that decides; it says 401 for a token
 * that is not valid (unknown, revoked, expired) and 403 for a valid token used beyond its
 * grant.
 *
 * With a generation file, the documents `authorize` reads are cached (grant-cache.ts) and
 * each request checks the file first (token-generation.ts): a token used once costs no
 * further database read until a token changes, while a revocation made through this class
 * in another process (nonstop-admin) is seen by the very next request. Every decision is
 * still made per request from the document: the secret compared in constant time, the
 * expiry against the request's own clock, so a cached token stops at its expiry instant.
 */
export class TokenStore {
  private readonly tokens: Collection<TokenDoc>;
  private readonly generation: TokenGeneration | undefined;
  private readonly cache: GrantCache<TokenDoc> | undefined;

  constructor(db: Db, opts: TokenStoreOptions = {}) {
    this.tokens = db.collection<TokenDoc>('tokens');
    this.generation = opts.generation;
    this.cache = opts.generation ? new GrantCache<TokenDoc>(opts.cache ?? DEFAULT_GRANT_CACHE) : undefined;
  }

  /** A new token; without `client` it is its own client (its id). */
  async create(opts: { collections: string[]; scopes: Scope[]; client?: string; expiresAt?: Date; label?: string; now?: Date }): Promise<{ id: string; token: string; client: string }> {
    if (opts.client !== undefined && !isClientName(opts.client)) {
      throw new ApiError('badRequest', 'a client name is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit, and not shaped like a token id');
    }
    return this.insertToken({ ...opts, client: opts.client });
  }

  /**
   * A new token for the same client, collections, scopes and label as the active token
   * `id` (not its expiry: a replacement that expires with the token it replaces would
   * not replace it). The old token stays valid until revoked, so holders can switch over.
   * Undefined when no active token has that id.
   */
  async rotate(id: string, opts: { expiresAt?: Date; now?: Date } = {}): Promise<{ id: string; token: string; client: string } | undefined> {
    if (!TOKEN_ID.test(id)) return undefined;
    const old = await this.tokens.findOne({ _id: id, revokedAt: { $exists: false } });
    if (!old) return undefined;
    return this.insertToken({
      collections: old.collections,
      scopes: old.scopes,
      client: old.client ?? old._id,
      ...(opts.expiresAt ? { expiresAt: opts.expiresAt } : {}),
      ...(old.label ? { label: old.label } : {}),
      ...(opts.now ? { now: opts.now } : {}),
    });
  }

  private async insertToken(opts: { collections: string[]; scopes: Scope[]; client: string | undefined; expiresAt?: Date; label?: string; now?: Date }): Promise<{ id: string; token: string; client: string }> {
    if (opts.collections.length === 0 || !opts.collections.every(isCollectionName)) throw new ApiError('badCollection', 'invalid collection name');
    if (opts.scopes.length === 0) throw new ApiError('badRequest', 'at least one scope is needed');
    const { id, token, hash } = generateToken();
    const client = opts.client ?? id;
    const doc: TokenDoc = { _id: id, hash, client, collections: [...new Set(opts.collections)], scopes: [...new Set(opts.scopes)], createdAt: opts.now ?? new Date() };
    if (opts.expiresAt) doc.expiresAt = opts.expiresAt;
    if (opts.label) doc.label = opts.label;
    await this.tokens.insertOne(doc);
    return { id, token, client };
  }

  async list(): Promise<Omit<TokenDoc, 'hash'>[]> {
    return this.tokens.find({}, { projection: { hash: 0 } }).sort({ createdAt: 1 }).toArray();
  }

  /**
   * True when a token with that id existed and was not yet revoked. With a generation file,
   * the revocation is then signalled to the service; when that fails the revocation stays
   * stored and TokenChangeNotSignalledError says the service may not know yet.
   */
  async revoke(id: string, now = new Date()): Promise<boolean> {
    if (!TOKEN_ID.test(id)) return false;
    let modified: boolean;
    try {
      modified = (await this.tokens.updateOne({ _id: id, revokedAt: { $exists: false } }, { $set: { revokedAt: now } })).modifiedCount === 1;
    } catch (err) {
      // The update may have been applied before the error reached us: signal anyway. The
      // database's error is the one to report, so a failed signal is not.
      try {
        this.generation?.bump();
      } catch {
        // reported through `err`
      }
      throw err;
    }
    // Creating a token needs no signal (the cache never remembers a miss); taking access
    // away does. Nothing changed when nothing was modified: a concurrent revoke signals itself.
    if (modified) this.generation?.bump();
    return modified;
  }

  /** The lookup runs inside the request's deadline when one is given. */
  async authorize(token: string, collection: string, scope: Scope, opts: { deadline?: Deadline; now?: Date } = {}): Promise<TokenGrant> {
    const id = tokenId(token);
    if (id === undefined) throw new ApiError('unauthenticated', 'invalid token');
    const doc = await this.lookup(id, opts.deadline);
    if (!doc || !hashMatches(token, doc.hash)) throw new ApiError('unauthenticated', 'invalid token');
    if (doc.revokedAt) throw new ApiError('unauthenticated', 'token revoked');
    const now = opts.now ?? new Date();
    if (doc.expiresAt && doc.expiresAt.getTime() <= now.getTime()) throw new ApiError('unauthenticated', 'token expired');
    if (!doc.collections.includes(collection)) throw new ApiError('forbidden', `token does not grant collection ${collection}`);
    if (!doc.scopes.includes(scope)) throw new ApiError('forbidden', `token does not grant ${scope}`);
    return { id: doc._id, client: doc.client ?? doc._id, collections: doc.collections, scopes: doc.scopes };
  }

  /** The token's document, from the cache when the generation has not moved since it was read. */
  private async lookup(id: string, deadline: Deadline | undefined): Promise<TokenDoc | null> {
    // The epoch is taken before the read: a change that lands while the read is in flight
    // moves it, and the cache then refuses to keep what this read returned.
    const epoch = this.cache ? this.generation?.epoch() : undefined;
    const clock = performance.now();
    if (epoch !== undefined) {
      const cached = this.cache?.get(id, epoch, clock);
      if (cached) return cached;
    }
    let doc: TokenDoc | null;
    try {
      doc = await this.tokens.findOne({ _id: id }, deadline ? deadline.operation() : {});
    } catch (err) {
      throw readFailure(err);
    }
    // Only tokens that exist are kept: an id unknown now may be created a second later.
    if (doc && epoch !== undefined) this.cache?.set(id, freezeDoc(doc), epoch, clock);
    return doc;
  }
}

/** A cached document is shared by every request that uses it: none may change it. */
function freezeDoc(doc: TokenDoc): TokenDoc {
  Object.freeze(doc.collections);
  Object.freeze(doc.scopes);
  return Object.freeze(doc);
}
