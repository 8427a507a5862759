import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const REPO_ROOT = join(__dirname, '..', '..', '..', '..');

export interface ImageSet {
  gateway: string;
  broker: string;
  core: string;
  coreTarget: string;
  probe: string;
}

/**
 * Builds the three images and the test probe through scripts/build-images.sh — the same
 * code path, core variant and build secrets as `npm run demo` and `npm run bench` — and
 * returns the image names it reports. Its progress goes to this process's stderr.
 * `coreTarget` overrides the core variant the script would choose.
 */
export async function buildAll(tag: string, coreTarget?: string): Promise<ImageSet> {
  const env = coreTarget ? { ...process.env, NONSTOP_CORE_TARGET: coreTarget } : process.env;
  const child = promisify(execFile)('bash', [join(REPO_ROOT, 'scripts', 'build-images.sh'), '--tag', tag, '--probe'], { cwd: REPO_ROOT, env, maxBuffer: 1 << 20 });
  child.child.stderr?.pipe(process.stderr);
  const { stdout } = await child;
  const built = new Map(stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
  const get = (role: keyof ImageSet): string => {
    const image = built.get(role);
    if (!image) throw new Error(`scripts/build-images.sh reported no ${role} image (stdout: ${stdout.trim()})`);
    return image;
  };
  return { gateway: get('gateway'), broker: get('broker'), core: get('core'), coreTarget: get('coreTarget'), probe: get('probe') };
}
