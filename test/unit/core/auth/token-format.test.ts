import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { generateToken, hashMatches, hashToken, tokenId } from '../../../../services/core/auth/token-format';

const TOKEN_SHAPE = /^nst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;

describe('generateToken', () => {
  it('makes nst_<16 hex>_<43 base64url> tokens whose id and hash match', () => {
    const t = generateToken();
    assert.match(t.token, TOKEN_SHAPE);
    assert.equal(t.token.slice(4, 20), t.id);
    assert.equal(tokenId(t.token), t.id);
    assert.equal(t.hash, createHash('sha256').update(t.token).digest('hex'));
    assert.ok(!t.hash.includes(t.token.slice(21)));
  });

  it('makes a different id and secret each time', () => {
    const tokens = Array.from({ length: 50 }, () => generateToken());
    assert.equal(new Set(tokens.map((t) => t.id)).size, 50);
    assert.equal(new Set(tokens.map((t) => t.token.slice(21))).size, 50);
  });
});

describe('tokenId', () => {
  it('extracts the id of a well-formed token', () => {
    assert.equal(tokenId(`nst_0123456789abcdef_${'A'.repeat(43)}`), '0123456789abcdef');
  });

  it('refuses malformed and injected strings', () => {
    const good = generateToken().token;
    const bad = [
      '',
      'nst_{"$gt":""}_x',
      `nst_{"$gt":""}_${'A'.repeat(43)}`,
      `nst_0123456789ABCDEF_${'A'.repeat(43)}`, // uppercase id
      `nst_0123456789abcde_${'A'.repeat(43)}`, // short id
      `nst_0123456789abcdef_${'A'.repeat(42)}`, // short secret
      `nst_0123456789abcdef_${'A'.repeat(44)}`, // long secret
      `nst_0123456789abcdef_${'A'.repeat(42)}=`, // padding
      `nst_0123456789abcdef_${'A'.repeat(42)}+`, // base64, not base64url
      `Bearer ${good}`,
      `${good}\n`,
      `${good} `,
      `\n${good}`,
      good.replace('nst_', 'NST_'),
      `${good}${good}`,
      `nst_0123456789abcdef_${'A'.repeat(20)}\u0000${'A'.repeat(22)}`,
    ];
    for (const s of bad) assert.equal(tokenId(s), undefined, JSON.stringify(s));
  });
});

describe('hashMatches', () => {
  it('is true for the token whose hash is stored', () => {
    const t = generateToken();
    assert.equal(hashMatches(t.token, t.hash), true);
    assert.equal(hashMatches(t.token, hashToken(t.token)), true);
  });

  it('is false for another token or a token differing by one character', () => {
    const t = generateToken();
    assert.equal(hashMatches(generateToken().token, t.hash), false);
    const last = t.token.at(-1) === 'A' ? 'B' : 'A';
    assert.equal(hashMatches(t.token.slice(0, -1) + last, t.hash), false);
  });

  it('is false, without throwing, for a stored hash of another length or not hex', () => {
    const t = generateToken();
    for (const stored of ['', t.hash.slice(0, 62), `${t.hash}00`, 'z'.repeat(64), t.hash.slice(0, 63)]) {
      assert.equal(hashMatches(t.token, stored), false, JSON.stringify(stored));
    }
  });
});
