/** OpenSSH's ssh-keygen, the reference reader and writer of SSH key files in tests. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { requireBinary } from './binaries';

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function sshKeygen(args: readonly string[], input?: string): Run {
  const bin = requireBinary('openssh-client', '/usr/bin/ssh-keygen');
  const r = spawnSync(bin, args, { input, encoding: 'utf8', env: { PATH: process.env.PATH } });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs ssh-keygen and fails the test, with its output, unless it exits 0. */
export function sshKeygenOk(args: readonly string[], input?: string): string {
  const r = sshKeygen(args, input);
  assert.equal(r.status, 0, `ssh-keygen ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** The "SHA256:..." fingerprint ssh-keygen prints for a key file. */
export function opensshFingerprint(path: string): string {
  const out = sshKeygenOk(['-l', '-E', 'sha256', '-f', path]);
  const m = /^\d+ (SHA256:[A-Za-z0-9+/]{43}) /.exec(out);
  assert.ok(m, `unexpected ssh-keygen -l output: ${out}`);
  return m[1]!;
}
