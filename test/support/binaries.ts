import { accessSync, constants } from 'node:fs';

/** The first existing executable among `candidates`, or undefined. */
export function findBinary(...candidates: string[]): string | undefined {
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** Like findBinary, but a missing binary fails the test with what to install. */
export function requireBinary(pkg: string, ...candidates: string[]): string {
  const found = findBinary(...candidates);
  if (!found) throw new Error(`${candidates.join(' or ')} not found: install the Debian package ${pkg} (scripts/bootstrap.sh --test does)`);
  return found;
}
