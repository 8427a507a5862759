import assert from 'node:assert/strict';
import {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  MAX_ENVELOPE_BYTES,
  PoisonMessageError,
  type PoisonReason,
  type RequestEnvelope,
} from '../../../../services/common/queue/envelope';
import { ApiError } from '../../../../services/common/errors/api-error';
import { MAX_BUDGET_MS } from '../../../../services/common/queue/timing';

const ID = '0f8fad5b-d9cb-469f-a165-70867728950e';

function request(overrides: Partial<RequestEnvelope> = {}): RequestEnvelope {
  return {
    v: 2,
    id: ID,
    gw: 'gw-1',
    budgetMs: 5000,
    method: 'POST',
    collection: 'notes',
    token: 'nst_0123456789abcdef_secret',
    body: '{"title":"x"}',
    ...overrides,
  };
}

function poison(fn: () => unknown, reason: PoisonReason): PoisonMessageError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PoisonMessageError, `expected a PoisonMessageError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    assert.equal(err.code, `poison_${reason}`);
    return err;
  }
  assert.fail(`expected poison ${reason}`);
}

/** The envelope as JSON with fields replaced or removed (undefined removes). */
function tampered(changes: Record<string, unknown>): string {
  const raw: Record<string, unknown> = { ...request() };
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete raw[k];
    else raw[k] = v;
  }
  return JSON.stringify(raw);
}

describe('request envelopes', () => {
  it('round-trips a POST and a GET through encode and decode', () => {
    const post = request();
    assert.deepEqual(decodeRequest(encodeRequest(post)), post);
    const get = request({ method: 'GET', recordId: ID, body: undefined });
    delete get.body;
    assert.deepEqual(decodeRequest(encodeRequest(get)), get);
  });

  it('round-trips a LIST with its query and a DELETE through encode and decode', () => {
    const list = request({ method: 'LIST', query: { limit: 100, cursor: 'AQID-_x', createdFrom: '2026-11-28T10:00:00Z', createdTo: '2026-11-29T10:00:00+01:00' }, body: undefined });
    delete list.body;
    assert.deepEqual(decodeRequest(encodeRequest(list)), list);
    const erase = request({ method: 'DELETE', recordId: ID, body: undefined });
    delete erase.body;
    assert.deepEqual(decodeRequest(encodeRequest(erase)), erase);
  });

  it('refuses a query that is not the four typed fields: objects, arrays, numbers as text, extra keys, limits out of range', () => {
    const bad: unknown[] = [
      { createdFrom: { $ne: 'x' } },
      { cursor: { $gt: '' } },
      { cursor: ['a', 'b'] },
      { limit: '20' },
      { limit: 0 },
      { limit: -1 },
      { limit: 101 },
      { limit: 1e9 },
      { limit: 2.5 },
      { $where: 'sleep(1)' },
      { sort: 'createdAt' },
      { cursor: 'c'.repeat(513) },
      ['limit', 5],
      'limit=5',
    ];
    for (const query of bad) poison(() => decodeRequest(tampered({ method: 'LIST', body: undefined, query })), 'bad_shape');
    // Positive control: the same envelope with a query of the right shape decodes.
    assert.deepEqual(decodeRequest(tampered({ method: 'LIST', body: undefined, query: { limit: 5 } })).query, { limit: 5 });
  });

  it('refuses an envelope larger than the limit as oversize', () => {
    // What a hostile gateway could send: our own encodeRequest refuses to make it.
    const big = JSON.stringify(request({ body: 'x'.repeat(MAX_ENVELOPE_BYTES) }));
    poison(() => decodeRequest(big), 'oversize');
  });

  it('refuses to encode a body of the largest size that escapes past the limit, 413 body_too_large, and encodes one that does not', () => {
    const max = MAX_ENVELOPE_BYTES / 2;
    // A JSON string of escaped backslashes: each two-byte `\\` becomes four bytes inside the envelope.
    const escaping = `"${'\\\\'.repeat((max - 2) / 2)}"`;
    assert.equal(Buffer.byteLength(escaping), max);
    assert.throws(
      () => encodeRequest(request({ body: escaping })),
      (err: unknown) => err instanceof ApiError && err.code === 'body_too_large' && err.status === 413,
    );
    // Positive control: a body of the same size that needs no escaping fits, and so does a
    // multi-byte one sized in UTF-8 (three bytes a character, under the limit once encoded).
    const plain = `"${'a'.repeat(max - 2)}"`;
    assert.equal(decodeRequest(encodeRequest(request({ body: plain }))).body, plain);
    const wide = `"${'✓'.repeat((max - 2) / 3)}"`;
    assert.equal(decodeRequest(encodeRequest(request({ body: wide }))).body, wide);
  });

  it('counts the size limit in UTF-8 bytes', () => {
    // Half as many characters as the limit, but each is two bytes: over the limit.
    const body = 'é'.repeat(MAX_ENVELOPE_BYTES / 2);
    poison(() => decodeRequest(JSON.stringify(request({ body }))), 'oversize');
  });

  it('refuses text that is not JSON', () => {
    for (const text of ['', '{', 'not json', '{"v":1,}']) poison(() => decodeRequest(text), 'bad_json');
  });

  it('refuses another protocol version, including v1 and the string "2"', () => {
    for (const v of [1, 3, '2', 0, null]) {
      const err = poison(() => decodeRequest(tampered({ v })), 'unknown_version');
      assert.match(err.message, /is not 2/);
    }
  });

  it('refuses envelopes with missing fields', () => {
    for (const field of ['v', 'id', 'gw', 'budgetMs', 'method', 'collection', 'token']) {
      poison(() => decodeRequest(tampered({ [field]: undefined })), 'bad_shape');
    }
  });

  it('refuses extra fields', () => {
    const err = poison(() => decodeRequest(tampered({ admin: true })), 'bad_shape');
    assert.ok(!err.message.includes('true'));
    poison(() => decodeRequest(`{"__proto__":{"x":1},${encodeRequest(request()).slice(1)}`), 'bad_shape');
  });

  it('refuses bad request ids, gateway ids, methods and types', () => {
    const bad: Record<string, unknown>[] = [
      { id: 'not-a-uuid' },
      { id: ID.toUpperCase() },
      { id: `${ID}\n` },
      { gw: 'GW-1' },
      { gw: '-gw' },
      { gw: 'a'.repeat(33) },
      { gw: 'gw:1' },
      { method: 'delete' },
      { method: 'PUT' },
      { method: 'post' },
      { budgetMs: 0 },
      { budgetMs: -1 },
      { budgetMs: 1.5 },
      { budgetMs: '5' },
      { budgetMs: MAX_BUDGET_MS + 1 },
      // Absolute times are v1's and compare two hosts' clocks: no longer accepted.
      { deadline: 1_700_000_005_000 },
      { key: '' },
      { key: 'k'.repeat(129) },
      { key: 'with space' },
      { collection: 'c'.repeat(201) },
      { token: 't'.repeat(513) },
      { body: { title: 'x' } },
      { recordId: 7 },
    ];
    for (const change of bad) poison(() => decodeRequest(tampered(change)), 'bad_shape');
  });

  it('refuses roots that are not objects', () => {
    for (const text of ['[]', '"x"', '1', 'null']) poison(() => decodeRequest(text), 'bad_shape');
  });

  it('names the bad fields, not their values', () => {
    const err = poison(() => decodeRequest(tampered({ gw: 'EVIL-VALUE', method: 'PATCH' })), 'bad_shape');
    assert.match(err.message, /gw/);
    assert.match(err.message, /method/);
    assert.ok(!err.message.includes('EVIL-VALUE'));
  });
});

describe('reply envelopes', () => {
  it('round-trips a reply', () => {
    const reply = { v: 2 as const, id: ID, status: 201, body: { id: ID } };
    assert.deepEqual(decodeReply(encodeReply(reply)), reply);
  });

  it('refuses text that is not JSON', () => {
    poison(() => decodeReply('{"v":1'), 'bad_json');
  });

  it('refuses bad statuses, ids, versions and extra fields', () => {
    const good = { v: 2, id: ID, status: 200, body: null };
    for (const change of [{ status: 99 }, { status: 600 }, { status: 200.5 }, { id: 'x' }, { v: 1 }, { extra: 1 }]) {
      poison(() => decodeReply(JSON.stringify({ ...good, ...change })), 'bad_shape');
    }
    poison(() => decodeReply(JSON.stringify({ v: 2, status: 200, body: null })), 'bad_shape');
  });
});
