/**
 * Why nonstop-admin would not take or restore a backup. Stable: tests and scripts branch
 * on the code, never on the message.
 *
 *   not_a_backup         the first line is not a nonstop-backup header (another format, not JSON)
 *   unsupported_version  a version this nonstop-admin does not read (a newer one wrote it)
 *   truncated            no trailer at the end: the file was cut short (or its last line damaged)
 *   checksum_mismatch    the SHA-256 in the trailer is not that of the file: damaged or altered
 *   bad_line             a line that is not a token or record of this version's shape, or a repeated id
 *   inconsistent         the trailer's counts or key ids are not those of the lines before it
 *   unknown_key          a key id the backup needs is not in this core's key file: its records would be unreadable
 *   not_authentic        the checksum holds but the MAC under the deployment's key does not: not made by
 *                        a core holding these keys, or altered by someone who recomputed the checksum
 *   target_not_empty     restore into a core that already holds records, without --merge
 *   records_in_clear     backup of a core still holding records stored before encryption: run keys rewrap first
 */
export type BackupRefusal =
  | 'not_a_backup'
  | 'unsupported_version'
  | 'truncated'
  | 'checksum_mismatch'
  | 'bad_line'
  | 'inconsistent'
  | 'unknown_key'
  | 'not_authentic'
  | 'target_not_empty'
  | 'records_in_clear';

export class BackupRefusedError extends Error {
  constructor(
    readonly code: BackupRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'BackupRefusedError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}
