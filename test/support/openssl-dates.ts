import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

/**
 * OpenSSL's notAfter of the first certificate in a PEM text, in unix seconds: an oracle for
 * the expiry gauges that shares no code with them (they parse with node:crypto).
 */
export function opensslNotAfter(pem: string): number {
  const out = execFileSync('openssl', ['x509', '-noout', '-enddate', '-dateopt', 'iso_8601'], { input: pem, encoding: 'utf8' });
  const m = /^notAfter=(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)Z$/m.exec(out);
  assert.ok(m, `openssl printed ${JSON.stringify(out)}`);
  return Date.parse(`${m[1]}T${m[2]}Z`) / 1000;
}
