import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { newDataKey } from '../../../../services/common/pki/data-key-file';
import { BackupRefusedError, type BackupRefusal } from '../../../../services/core/backup/backup-refused-error';
import { recordDoc, recordLine, tokenDoc, tokenLine } from '../../../../services/core/backup/documents';
import { BackupEncoder, verifyBackup, type RecordLine, type TokenLine } from '../../../../services/core/backup/format';
import { DataKeyRing } from '../../../../services/core/storage/data-keys';
import { sealRecord } from '../../../../services/core/storage/record-cipher';
import { toSealedDoc, type RecordDoc } from '../../../../services/core/storage/records';

const refused = (code: BackupRefusal) => (err: unknown): boolean => {
  assert.ok(err instanceof BackupRefusedError, `not a BackupRefusedError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return true;
};

/** A key file of two keys: records sealed under both (one rotated in halfway). */
const oldKey = newDataKey();
const newKey = newDataKey();
const ring = DataKeyRing.of({ active: newKey.id, keys: new Map([[oldKey.id, oldKey.key], [newKey.id, newKey.key]]) });
const oldRing = DataKeyRing.of({ active: oldKey.id, keys: new Map([[oldKey.id, oldKey.key]]) });

const canary = `canary-${randomBytes(8).toString('hex')}`;

function sealedRecord(keys: DataKeyRing, i: number): RecordLine {
  const id = randomUUID();
  const doc: RecordDoc = {
    _id: id,
    collection: 'notes',
    client: 'alice',
    tokenId: '0123456789abcdef',
    enc: toSealedDoc(sealRecord(keys, { id, collection: 'notes' }, JSON.stringify({ i, secret: canary }))),
    createdAt: new Date(Date.UTC(2026, 10, 28, 10, 0, i)),
  };
  return recordLine(doc)!;
}

const tokens: TokenLine[] = [
  { t: 'token', id: 'aaaaaaaaaaaaaaaa', hash: 'a'.repeat(64), client: 'alice', collections: ['notes'], scopes: ['read', 'write'], createdAt: '2026-11-01T00:00:00.000Z' },
  { t: 'token', id: 'bbbbbbbbbbbbbbbb', hash: 'b'.repeat(64), collections: ['notes', 'orders'], scopes: ['read'], createdAt: '2026-11-02T00:00:00.000Z', expiresAt: '2027-01-01T00:00:00.000Z', revokedAt: '2026-11-20T00:00:00.000Z', label: 'ci' },
];
const records: RecordLine[] = [sealedRecord(oldRing, 0), sealedRecord(oldRing, 1), sealedRecord(ring, 2)];
const startedAt = new Date('2026-11-28T10:00:00.000Z');

/** A backup as nonstop-admin writes one; `mac` lets a test forge one under another key. */
function encode(opts: { tokens?: TokenLine[]; records?: RecordLine[]; mac?: { id: string; key: Buffer } } = {}): Buffer {
  const enc = new BackupEncoder(startedAt, opts.mac ?? ring.active());
  const parts = [enc.header()];
  for (const t of opts.tokens ?? tokens) parts.push(enc.token(t));
  for (const r of opts.records ?? records) parts.push(enc.record(r));
  parts.push(enc.trailer());
  return Buffer.concat(parts);
}

const lines = (b: Buffer): string[] => b.toString('utf8').split('\n').slice(0, -1);
const join = (ls: string[]): Buffer => Buffer.from(ls.map((l) => `${l}\n`).join(''), 'utf8');

/** `ls` with a trailer whose sha256 is recomputed (what someone who edits a file would do). */
function rechecksummed(ls: string[]): Buffer {
  const body = join(ls.slice(0, -1));
  const trailer = JSON.parse(ls[ls.length - 1]!) as Record<string, unknown>;
  trailer.sha256 = createHash('sha256').update(body).digest('hex');
  return Buffer.concat([body, join([JSON.stringify(trailer)])]);
}

describe('backup format: encode, verify, and the reasons a file is refused', () => {
  it('verifies what it encoded and gives back every token and record line as written, with counts and key ids', () => {
    const file = encode();
    const v = verifyBackup(file, ring);
    assert.equal(v.header.startedAt, startedAt.toISOString());
    assert.deepEqual(v.tokens, tokens);
    assert.deepEqual(v.records, records);
    assert.deepEqual({ tokens: v.trailer.tokens, records: v.trailer.records, keyIds: v.trailer.keyIds }, { tokens: 2, records: 3, keyIds: [oldKey.id, newKey.id].sort() });
    assert.equal(v.trailer.sha256, createHash('sha256').update(file.subarray(0, file.lastIndexOf('{"t":"end"'))).digest('hex'));
  });

  it('holds records sealed: the canary in their content is nowhere in the file, which holds their ids', () => {
    const file = encode();
    assert.ok(file.includes(records[0]!.id), 'positive control: the record ids are in the file');
    assert.equal(file.includes(canary), false);
  });

  it('turns stored documents into lines and back byte for byte', () => {
    for (const r of records) assert.deepEqual(recordLine(recordDoc(r)), r);
    for (const t of tokens) assert.deepEqual(tokenLine(tokenDoc(t)), t);
    const inClear: RecordDoc = { _id: randomUUID(), collection: 'notes', tokenId: '0123456789abcdef', data: { secret: canary }, createdAt: new Date() };
    assert.equal(recordLine(inClear), undefined, 'a record stored in clear has no backup line');
  });

  it('refuses every single flipped byte anywhere in the file', () => {
    const file = encode();
    for (let i = 0; i < file.length; i++) {
      const bad = Buffer.from(file);
      bad[i]! ^= 0x01;
      assert.throws(() => verifyBackup(bad, ring), (err: unknown) => err instanceof BackupRefusedError, `byte ${i} flipped was accepted`);
    }
  });

  it("calls a flipped byte inside a record's ciphertext a checksum mismatch", () => {
    const file = encode();
    const at = file.indexOf(records[1]!.enc.ciphertext) + 4;
    const bad = Buffer.from(file);
    bad[at] = bad[at] === 0x41 ? 0x42 : 0x41;
    assert.throws(() => verifyBackup(bad, ring), refused('checksum_mismatch'));
  });

  it('refuses a file cut short anywhere, at a line boundary too, as truncated', () => {
    const file = encode();
    const ls = lines(file);
    for (let n = 1; n < ls.length; n++) assert.throws(() => verifyBackup(join(ls.slice(0, n)), ring), refused('truncated'), `${n} whole lines`);
    for (const cut of [file.length - 1, file.length - 10, Math.floor(file.length / 2), 20, 0]) assert.throws(() => verifyBackup(file.subarray(0, cut), ring), refused('truncated'), `cut at ${cut}`);
  });

  it('refuses a file whose trailer is missing, even when everything before it is intact', () => {
    const ls = lines(encode());
    assert.throws(() => verifyBackup(join(ls.slice(0, -1)), ring), refused('truncated'));
  });

  it('refuses another format: not JSON, JSON of another tool, an NDJSON dump', () => {
    for (const other of ['hello\n', 'hello', '{"format":"mongodump","version":1}\n', `{"_id":"${randomUUID()}","collection":"notes"}\n`, '[1,2,3]\n']) {
      assert.throws(() => verifyBackup(Buffer.from(other), ring), refused('not_a_backup'), JSON.stringify(other));
    }
  });

  it('refuses a version it does not read (a newer nonstop-admin wrote it), checksum intact', () => {
    const ls = lines(encode());
    ls[0] = ls[0]!.replace('"version":1', '"version":2');
    assert.throws(() => verifyBackup(rechecksummed(ls), ring), refused('unsupported_version'));
    // Positive control: the same rewrite with the version left alone verifies up to its MAC.
    const same = lines(encode());
    assert.doesNotThrow(() => verifyBackup(rechecksummed(same), ring));
  });

  it('refuses a backup needing a key the target key file does not hold, naming it', () => {
    const file = encode();
    const withoutOld = DataKeyRing.of({ active: newKey.id, keys: new Map([[newKey.id, newKey.key]]) });
    assert.throws(() => verifyBackup(file, withoutOld), (err: unknown) => refused('unknown_key')(err) && (err as Error).message.includes(oldKey.id));
    const other = DataKeyRing.of({ active: newDataKey().id, keys: new Map([[newDataKey().id, randomBytes(32)]]) });
    assert.throws(() => verifyBackup(file, other), refused('unknown_key'));
  });

  it('refuses a file made under a key of the same id but other bytes (another deployment, or a forger) as not authentic', () => {
    const forged = encode({ mac: { id: newKey.id, key: randomBytes(32) } });
    assert.throws(() => verifyBackup(forged, ring), refused('not_authentic'));
  });

  it('refuses a line added by someone who recomputed the checksum but holds no key (a token they know the secret of)', () => {
    const ls = lines(encode());
    const extra: TokenLine = { t: 'token', id: 'cccccccccccccccc', hash: createHash('sha256').update('nst_known').digest('hex'), collections: ['notes'], scopes: ['read'], createdAt: '2026-11-03T00:00:00.000Z' };
    ls.splice(1, 0, JSON.stringify(extra));
    const trailer = JSON.parse(ls[ls.length - 1]!) as { tokens: number };
    trailer.tokens += 1;
    ls[ls.length - 1] = JSON.stringify(trailer);
    assert.throws(() => verifyBackup(rechecksummed(ls), ring), refused('not_authentic'));
  });

  it('refuses a trailer whose counts or key ids are not those of the lines', () => {
    const ls = lines(encode());
    const trailer = JSON.parse(ls[ls.length - 1]!) as { records: number; keyIds: string[] };
    assert.throws(() => verifyBackup(join([...ls.slice(0, -1), JSON.stringify({ ...trailer, records: trailer.records + 1 })]), ring), refused('inconsistent'));
    assert.throws(() => verifyBackup(join([...ls.slice(0, -1), JSON.stringify({ ...trailer, keyIds: [newKey.id] })]), ring), refused('inconsistent'));
    // Positive control: the trailer as written passes.
    assert.doesNotThrow(() => verifyBackup(join(ls), ring));
  });

  it('refuses a line of the wrong shape or a repeated id, even in a file this key file authenticates', () => {
    const bad = (r: Record<string, unknown>) => r as unknown as RecordLine;
    const cases: [string, Buffer][] = [
      ['unknown field', encode({ records: [bad({ ...records[0], extra: 1 })] })],
      ['operator key', encode({ records: [bad({ ...records[0], collection: '$where' })] })],
      ['short nonce', encode({ records: [bad({ ...records[0], enc: { ...records[0]!.enc, nonce: 'AAAA' } })] })],
      ['non-canonical base64', encode({ records: [bad({ ...records[0], enc: { ...records[0]!.enc, ciphertext: `${records[0]!.enc.ciphertext}=` } })] })],
      ['bad time', encode({ records: [bad({ ...records[0], createdAt: '2026-13-01T00:00:00.000Z' })] })],
      ['record id not a uuid', encode({ records: [bad({ ...records[0], id: 'x' })] })],
      ['token without scopes', encode({ tokens: [{ ...tokens[0]!, scopes: [] }] })],
      ['repeated record id', encode({ records: [records[0]!, records[0]!] })],
      ['repeated token id', encode({ tokens: [tokens[0]!, tokens[0]!] })],
    ];
    for (const [what, file] of cases) assert.throws(() => verifyBackup(file, ring), refused('bad_line'), what);
    const blank = lines(encode());
    blank.splice(1, 0, '');
    assert.throws(() => verifyBackup(rechecksummed(blank), ring), refused('bad_line'), 'an empty line');
  });
});
