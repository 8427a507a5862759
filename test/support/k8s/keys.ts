import { chownSync } from 'node:fs';
import { run } from './cluster';
import { tempDir } from '../tmp';

export interface KeygenSettings {
  gatewayHost: string;
  sshPort: number;
  knockPortRange: string;
  coreNames: string[];
}

/**
 * The keys of a deployment, as an operator makes them for the chart: `nonstop-keygen` in
 * the core image into a directory, then `nonstop-keygen k8s-secrets`, whose output (a List
 * of three Secrets) is returned for `kubectl apply -f -`. The directory, CA key included,
 * is deleted: nothing of it reaches the cluster except the three tiers' Secrets.
 */
export async function keygenSecrets(coreImage: string, namespace: string, s: KeygenSettings): Promise<string> {
  const keys = tempDir('nonstop-k8s-keys-');
  try {
    // The image runs as uid 10001.
    chownSync(keys.dir, 10001, 10001);
    const docker = (args: string[]): ReturnType<typeof run> => run('/usr/bin/docker', ['run', '--rm', '--network', 'none', '--read-only', '--cap-drop', 'ALL', ...args], { timeoutMs: 120_000 });
    const made = await docker([
      '-v', `${keys.dir}:/keys`,
      '-e', `GATEWAY_HOST=${s.gatewayHost}`,
      '-e', `SSH_PORT=${s.sshPort}`,
      '-e', 'KNOCK_MODE=time',
      '-e', `KNOCK_PORT_RANGE=${s.knockPortRange}`,
      '-e', `CORE_NAMES=${s.coreNames.join(',')}`,
      coreImage, 'nonstop-keygen',
    ]);
    if (made.code !== 0) throw new Error(`nonstop-keygen exited ${made.code}: ${made.stderr}`);
    const listed = await docker(['-v', `${keys.dir}:/keys:ro`, coreImage, 'nonstop-keygen', 'k8s-secrets', '--namespace', namespace]);
    if (listed.code !== 0) throw new Error(`nonstop-keygen k8s-secrets exited ${listed.code}: ${listed.stderr}`);
    return listed.stdout;
  } finally {
    keys.cleanup();
  }
}
