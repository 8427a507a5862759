import type { Collection, Db } from 'mongodb';
import { ApiError } from '../../common/errors/api-error';
import { isCollectionName } from '../../common/ids/names';
import { generateToken, hashMatches, tokenId } from './token-format';

export type Scope = 'read' | 'write';

export interface TokenDoc {
  _id: string;
  hash: string;
  collections: string[];
  scopes: Scope[];
  createdAt: Date;
  expiresAt?: Date;
  revokedAt?: Date;
  label?: string;
}

export interface TokenGrant {
  id: string;
  collections: string[];
  scopes: Scope[];
}

/**
 * Who may do what: tokens stored hashed, each granting scopes on a list of collections,
 * optionally expiring, revocable. `authorize` is the single place that decides; it says
 * 401 for a token that is not valid (unknown, revoked, expired) and 403 for a valid token
 * used beyond its grant.
 */
export class TokenStore {
  private readonly tokens: Collection<TokenDoc>;

  constructor(db: Db) {
    this.tokens = db.collection<TokenDoc>('tokens');
  }

  async create(opts: { collections: string[]; scopes: Scope[]; expiresAt?: Date; label?: string; now?: Date }): Promise<{ id: string; token: string }> {
    if (opts.collections.length === 0 || !opts.collections.every(isCollectionName)) throw new ApiError('badCollection', 'invalid collection name');
    if (opts.scopes.length === 0) throw new ApiError('badRequest', 'at least one scope is needed');
    const { id, token, hash } = generateToken();
    const doc: TokenDoc = { _id: id, hash, collections: [...new Set(opts.collections)], scopes: [...new Set(opts.scopes)], createdAt: opts.now ?? new Date() };
    if (opts.expiresAt) doc.expiresAt = opts.expiresAt;
    if (opts.label) doc.label = opts.label;
    await this.tokens.insertOne(doc);
    return { id, token };
  }

  async list(): Promise<Omit<TokenDoc, 'hash'>[]> {
    return this.tokens.find({}, { projection: { hash: 0 } }).sort({ createdAt: 1 }).toArray();
  }

  /** True when a token with that id existed and was not yet revoked. */
  async revoke(id: string, now = new Date()): Promise<boolean> {
    if (!/^[0-9a-f]{16}$/.test(id)) return false;
    const res = await this.tokens.updateOne({ _id: id, revokedAt: { $exists: false } }, { $set: { revokedAt: now } });
    return res.modifiedCount === 1;
  }

  async authorize(token: string, collection: string, scope: Scope, now = new Date()): Promise<TokenGrant> {
    const id = tokenId(token);
    if (id === undefined) throw new ApiError('unauthenticated', 'invalid token');
    const doc = await this.tokens.findOne({ _id: id });
    if (!doc || !hashMatches(token, doc.hash)) throw new ApiError('unauthenticated', 'invalid token');
    if (doc.revokedAt) throw new ApiError('unauthenticated', 'token revoked');
    if (doc.expiresAt && doc.expiresAt.getTime() <= now.getTime()) throw new ApiError('unauthenticated', 'token expired');
    if (!doc.collections.includes(collection)) throw new ApiError('forbidden', `token does not grant collection ${collection}`);
    if (!doc.scopes.includes(scope)) throw new ApiError('forbidden', `token does not grant ${scope}`);
    return { id: doc._id, collections: doc.collections, scopes: doc.scopes };
  }
}
