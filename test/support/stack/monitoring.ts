import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './build';

/**
 * Builds nonstop/prometheus:<tag>, the compose profile `monitoring`'s image, through
 * scripts/lib/images.sh's build_monitoring_image: the build path `scripts/build-images.sh
 * --monitoring` takes, with the same build secrets and logs. Returns the image name.
 */
export async function buildMonitoringImage(tag: string): Promise<string> {
  const script = `source ${JSON.stringify(join(REPO_ROOT, 'scripts', 'lib', 'common.sh'))} && source ${JSON.stringify(join(REPO_ROOT, 'scripts', 'lib', 'images.sh'))} && build_monitoring_image "$1"`;
  const child = promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script, 'build', tag], { cwd: REPO_ROOT, maxBuffer: 1 << 20 });
  child.child.stderr?.pipe(process.stderr);
  const { stdout } = await child;
  const image = /^prometheus=(.+)$/m.exec(stdout)?.[1];
  if (!image) throw new Error(`build_monitoring_image reported no image (stdout: ${stdout.trim()})`);
  return image;
}

/** One sample of an instant query's result: its labels and value. */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

/** An instant query against Prometheus's HTTP API (`/api/v1/query`). */
export async function promQuery(base: string, query: string): Promise<PromSample[]> {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } };
  if (res.status !== 200 || body.status !== 'success' || body.data?.resultType !== 'vector') throw new Error(`query ${query}: ${res.status} ${JSON.stringify(body).slice(0, 500)}`);
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}
