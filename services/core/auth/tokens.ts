import type { Collection, Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { isCollectionName } from '../../common/ids/names';
import type { Deadline } from '../storage/deadline';
import { readFailure } from '../storage/errors';
import { generateToken, hashMatches, tokenId } from './token-format';

export type Scope = 'read' | 'write';

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
 * Who may do what: tokens stored hashed, each granting scopes on a list of collections,
 * optionally expiring, revocable, each held by a client that keeps its identity when its
 * token is rotated. `authorize` is the single place that decides; it says 401 for a token
 * that is not valid (unknown, revoked, expired) and 403 for a valid token used beyond its
 * grant.
 */
export class TokenStore {
  private readonly tokens: Collection<TokenDoc>;

  constructor(db: Db) {
    this.tokens = db.collection<TokenDoc>('tokens');
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

  /** True when a token with that id existed and was not yet revoked. */
  async revoke(id: string, now = new Date()): Promise<boolean> {
    if (!TOKEN_ID.test(id)) return false;
    const res = await this.tokens.updateOne({ _id: id, revokedAt: { $exists: false } }, { $set: { revokedAt: now } });
    return res.modifiedCount === 1;
  }

  /** The lookup runs inside the request's deadline when one is given. */
  async authorize(token: string, collection: string, scope: Scope, opts: { deadline?: Deadline; now?: Date } = {}): Promise<TokenGrant> {
    const id = tokenId(token);
    if (id === undefined) throw new ApiError('unauthenticated', 'invalid token');
    let doc: TokenDoc | null;
    try {
      doc = await this.tokens.findOne({ _id: id }, opts.deadline ? opts.deadline.operation() : {});
    } catch (err) {
      throw readFailure(err);
    }
    if (!doc || !hashMatches(token, doc.hash)) throw new ApiError('unauthenticated', 'invalid token');
    if (doc.revokedAt) throw new ApiError('unauthenticated', 'token revoked');
    const now = opts.now ?? new Date();
    if (doc.expiresAt && doc.expiresAt.getTime() <= now.getTime()) throw new ApiError('unauthenticated', 'token expired');
    if (!doc.collections.includes(collection)) throw new ApiError('forbidden', `token does not grant collection ${collection}`);
    if (!doc.scopes.includes(scope)) throw new ApiError('forbidden', `token does not grant ${scope}`);
    return { id: doc._id, client: doc.client ?? doc._id, collections: doc.collections, scopes: doc.scopes };
  }
}
