import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { pack } from 'tar-fs';
import { openBuildSession } from './buildkit-session';

export const REPO_ROOT = join(__dirname, '..', '..', '..', '..');

/** What goes into a build context: exactly what the Dockerfiles COPY, nothing else. */
const CONTEXT_ENTRIES = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'services', 'config', 'Dockerfile.gateway', 'Dockerfile.broker', 'Dockerfile.core', 'test/support/stack/Dockerfile.probe', 'bench/tools'];

function context(): Readable {
  return pack(REPO_ROOT, { entries: CONTEXT_ENTRIES }) as unknown as Readable;
}

/** The CA bundle of a TLS-intercepting proxy, when this machine has one (offline builds). */
function caSecret(): Record<string, Buffer> {
  const bundle = '/etc/ssl/certs/ca-certificates.crt';
  return existsSync(bundle) ? { ca: readFileSync(bundle) } : {};
}

interface BuildMessage {
  error?: string;
  errorDetail?: { message?: string };
  aux?: unknown;
}

/**
 * Builds one image through the Docker API with BuildKit (API build version 2) and a session
 * carrying the optional `ca` secret — the same result as `DOCKER_BUILDKIT=1 docker build
 * --secret id=ca,src=... -f <dockerfile> [--target t] -t <tag> .`.
 */
export async function buildImage(d: Docker, opts: { dockerfile: string; tag: string; target?: string }): Promise<void> {
  const session = await openBuildSession(d, caSecret());
  try {
    const stream = await new Promise<Readable>((resolve, reject) => {
      d.modem.dial(
        {
          path: '/build?',
          method: 'POST',
          file: context(),
          options: { version: '2', session: session.id, ...(process.env.NONSTOP_E2E_NOCACHE ? { nocache: true } : {}), dockerfile: opts.dockerfile, t: opts.tag, ...(opts.target ? { target: opts.target } : {}), buildargs: JSON.stringify({ REVISION: 'e2e' }) },
          isStream: true,
          statusCodes: { 200: true, 500: 'server error' },
        },
        (err: unknown, data: unknown) => (err ? reject(err instanceof Error ? err : new Error(JSON.stringify(err))) : resolve(data as Readable)),
      );
    });
    const messages = await new Promise<BuildMessage[]>((resolve, reject) => {
      d.modem.followProgress(stream, (err: Error | null, out: BuildMessage[]) => (err ? reject(err) : resolve(out)));
    });
    const failure = messages.find((m) => m.error !== undefined || m.errorDetail !== undefined);
    if (failure) throw new Error(`building ${opts.tag} from ${opts.dockerfile} failed: ${failure.error ?? failure.errorDetail?.message ?? 'unknown error'}`);
    await d.getImage(opts.tag).inspect();
  } finally {
    session.close();
  }
}

export interface ImageSet {
  gateway: string;
  broker: string;
  core: string;
  coreTarget: string;
  probe: string;
}

export function imageSet(tag: string): ImageSet {
  const coreTarget = process.env.NONSTOP_CORE_TARGET ?? 'core-ferretdb';
  return { gateway: `nonstop/gateway:${tag}`, broker: `nonstop/broker:${tag}`, core: `nonstop/${coreTarget}:${tag}`, coreTarget, probe: `nonstop/probe:${tag}` };
}

/** Builds the three images (and the test probe) once per test run. */
export async function buildAll(d: Docker, tag: string): Promise<ImageSet> {
  const set = imageSet(tag);
  await buildImage(d, { dockerfile: 'Dockerfile.gateway', tag: set.gateway });
  await buildImage(d, { dockerfile: 'Dockerfile.broker', tag: set.broker });
  await buildImage(d, { dockerfile: 'Dockerfile.core', tag: set.core, target: set.coreTarget });
  await buildImage(d, { dockerfile: 'test/support/stack/Dockerfile.probe', tag: set.probe });
  return set;
}
