import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from 'mongodb';
import { newDataKey, type DataKeySet } from '../../common/pki/data-key-file';
import { DataKeyRing } from '../storage/data-keys';
import { KeyRotation, type RewrapResult } from '../storage/key-rotation';
import { UsageError, parseKeyFlags } from './args';
import { DataKeyFile } from './data-key-file';

/** A key command that was refused or left work undone: exit 1, with the reason on stderr. */
export class KeyCommandRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyCommandRefusedError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

const WAIT_POLL_MS = 200;

/**
 * Waits until the running service says it wraps new records under `keyId` (it re-reads its
 * key file every second and records the active key in the database): from then on no new
 * record is wrapped under an older key, so a rewrap that follows leaves none behind.
 */
async function waitForService(rotation: KeyRotation, keyId: string, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  for (;;) {
    if ((await rotation.serviceActiveKey()) === keyId) return;
    if (Date.now() >= until) {
      throw new KeyCommandRefusedError(
        `core has not confirmed within ${waitMs / 1000} s that it wraps new records under key ${keyId} (is it running, and does it read this key file?); ` +
          `the key is in the file and active; run "nonstop-admin keys rewrap" once core has picked it up`,
      );
    }
    await sleep(WAIT_POLL_MS);
  }
}

function report(result: RewrapResult, keyId: string): void {
  process.stderr.write(`rewrapped ${result.rewrapped} records and encrypted ${result.encrypted} stored in clear under key ${keyId}\n`);
  if (result.unreadable.length > 0) {
    throw new KeyCommandRefusedError(`${result.unreadable.length} records could not be decrypted to rewrap (key missing or integrity check failed), left as they were: ${result.unreadable.slice(0, 20).join(', ')}`);
  }
}

async function rewrap(file: DataKeyFile, rotation: KeyRotation, waitMs: number): Promise<void> {
  const set = file.read();
  await waitForService(rotation, set.active, waitMs);
  report(await rotation.rewrapAll(DataKeyRing.of(set)), set.active);
}

/**
 * `nonstop-admin keys ...`: rotation of the key-encryption keys in CORE_DATA_KEYS_FILE
 * while core serves. The file is the only place keys live; the database only knows which
 * key id wraps each record.
 *
 *   status          the file's keys, the one core uses, and how many records each wraps
 *   rotate          adds a new key, makes it active, waits for core to use it, rewraps every record
 *   rewrap          rewraps every record (and encrypts those stored in clear) under the active key
 *   retire ID       removes a key from the file; refused while the key is active or wraps any record
 */
/** What `keys status` prints, one JSON line. */
export interface KeyStatusReport {
  active: string;
  keys: string[];
  /** The key core last said it wraps new records under; null before it has said. */
  serviceActive: string | null;
  recordsByKey: Record<string, number>;
  recordsInClear: number;
}

export async function keysCommand(verb: string, rest: string[], db: Db, keysFile: string): Promise<number> {
  const file = new DataKeyFile(keysFile);
  const rotation = new KeyRotation(db);
  if (verb === 'status') {
    if (rest.length > 0) throw new UsageError('keys status takes no arguments');
    const set = file.read();
    const usage = await rotation.usage();
    const report: KeyStatusReport = { active: set.active, keys: [...set.keys.keys()], serviceActive: (await rotation.serviceActiveKey()) ?? null, recordsByKey: usage.byKey, recordsInClear: usage.plaintext };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return 0;
  }
  if (verb === 'rotate' || verb === 'rewrap') {
    const { waitMs } = parseKeyFlags(rest, `keys ${verb}`);
    if (verb === 'rewrap') {
      await rewrap(file, rotation, waitMs);
      return 0;
    }
    // The lock covers the file change only: core reads the file on its own, and a second
    // rotate meanwhile just adds another key, which the rewrap loop then moves to.
    const added = await file.locked(() => {
      const set = file.read();
      const { id, key } = newDataKey();
      file.write({ active: id, keys: new Map([...set.keys, [id, key]]) });
      return id;
    });
    process.stderr.write(`added key ${added} and made it active; waiting for core to use it\n`);
    await rewrap(file, rotation, waitMs);
    process.stdout.write(`${added}\n`);
    return 0;
  }
  if (verb === 'retire') {
    const [id, ...extra] = rest;
    if (id === undefined || extra.length > 0) throw new UsageError('keys retire takes one key id');
    await file.locked(async () => {
      const set = file.read();
      if (!set.keys.has(id)) throw new KeyCommandRefusedError(`no key ${id} in the key file`);
      if (set.active === id) throw new KeyCommandRefusedError(`key ${id} is the active key; rotate first`);
      if ((await rotation.serviceActiveKey()) === id) throw new KeyCommandRefusedError(`core still wraps new records under key ${id}: it has not read the key file since the rotation`);
      const inUse = await rotation.recordsUnder(id);
      if (inUse > 0) throw new KeyCommandRefusedError(`${inUse} records still use key ${id}; run "nonstop-admin keys rewrap" first`);
      const without: DataKeySet = { active: set.active, keys: new Map([...set.keys].filter(([k]) => k !== id)) };
      file.write(without);
      // A record wrapped under it that was still on its way to the database when counted
      // (written before core switched keys) would now be unreadable: count again, and put
      // the key back if one arrived.
      const late = await rotation.recordsUnder(id);
      if (late > 0) {
        file.write(set);
        throw new KeyCommandRefusedError(`${late} records under key ${id} arrived while retiring it; the key is back in the file; run "nonstop-admin keys rewrap" and retire again`);
      }
    });
    process.stderr.write(`retired key ${id}: removed from the key file\n`);
    return 0;
  }
  throw new UsageError(`unknown command keys ${verb}`);
}
