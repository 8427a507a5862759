import assert from 'node:assert/strict';
import type { BackupRefusal } from '../../services/core/backup/backup-refused-error';

/**
 * The canary's forms in a file: as text, and base64-encoded at each of the three byte
 * alignments it could have inside a longer encoded text (a content that was only base64ed,
 * not encrypted, would hold one of these).
 */
export function canaryForms(canary: string): string[] {
  const forms = [canary];
  for (let o = 0; o < 3; o++) forms.push(Buffer.from(canary.slice(o, o + 3 * Math.floor((canary.length - o) / 3))).toString('base64'));
  return forms;
}

/** The code in nonstop-admin's one refusal line: `nonstop-admin: backup|restore refused (CODE): ...`. */
export function refusal(stderr: string): BackupRefusal | undefined {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one error line expected, got: ${stderr}`);
  return /^nonstop-admin: (?:backup|restore) refused \(([a-z_]+)\): \S/.exec(lines[0]!)?.[1] as BackupRefusal | undefined;
}
