import { chmodSync, chownSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../test/support/stack/build';
import type { ComposeSpec, ServiceSpec } from '../test/support/stack/compose-config';
import { docker } from '../test/support/stack/docker';
import { TEST_TAG } from '../test/support/stack/fixture';
import { execIn, Stack } from '../test/support/stack/stack';
import { tempDir } from '../test/support/tmp';
import { waitFor } from '../test/support/wait';
import { benchAdjust, benchImages, type Target } from './load';

/**
 * The curves section's stack: compose.yaml's services (the gateway with the benchmark's
 * raised per-address request limit, load.benchAdjust) plus a second gateway `gateway2`
 * (its own keys, from keygen run once more for it, as docs/deploying.md's "Keys for a
 * fleet" says) and two more brokers, `broker2` and `broker3` (the same broker identity,
 * each with its own Redis), every broker serving both gateways, as the fleet e2e test
 * builds it. Brokers are taken away by stopping them (brokers 3 → 2 → 1); the gateway
 * count is how many gateways the load is spread over.
 *
 * The brokers' schema directory is compose's (config/schemas) plus one bench-only
 * collection, `blobs` (BLOBS_SCHEMA): the body curve's large POSTs need a collection that
 * takes them, and `notes` allows 20,000 characters of body at most.
 *
 * gateway2 is also the knock sniffer's subject: `knock` settings raise its source cap and
 * step timeout so that many sources can be tracked at once at the rates this machine can
 * send (printed with the section); `gateway` keeps compose.yaml's knock settings.
 */
export const BROKERS = ['broker', 'broker2', 'broker3'] as const;
export const GATEWAYS = ['gateway', 'gateway2'] as const;
export type GatewayName = (typeof GATEWAYS)[number];

/** The body curve's collection: a title and strings of padding, up to 1 MiB and more. */
export const BLOBS_COLLECTION = 'blobs';
export const BLOBS_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  title: 'Benchmark padding (the curves section only)',
  type: 'object',
  properties: {
    title: { type: 'string', minLength: 1, maxLength: 200 },
    pad: { type: 'array', items: { type: 'string', maxLength: 60_000 }, maxItems: 64 },
  },
  required: ['title'],
  additionalProperties: false,
};

/** The gateway's uid and gid in every image (keygen writes its key files as it). */
const SERVICE_UID = 10001;

export interface CurvesStack {
  stack: Stack;
  /** Where gateway2's keys live on this host (a bind mount; its TLS certificate is read from here). */
  gateway2Keys: string;
  down: () => Promise<void>;
}

export interface KnockSubject {
  /** KNOCK_MAX_SOURCES, KNOCK_STEP_TIMEOUT_MS, KNOCK_SEQUENCE_TIMEOUT_MS and the container's memory limit for gateway2. */
  env: Record<string, string>;
  memoryBytes: number;
}

export async function curvesStack(knock: KnockSubject): Promise<CurvesStack> {
  const tmp = tempDir('nonstop-curves-');
  chmodSync(tmp.dir, 0o755);
  const gateway2Keys = join(tmp.dir, 'gateway2-keys');
  mkdirSync(gateway2Keys, { mode: 0o700 });
  chownSync(gateway2Keys, SERVICE_UID, SERVICE_UID);
  const schemas = join(tmp.dir, 'schemas');
  mkdirSync(schemas, { mode: 0o755 });
  for (const f of readdirSync(join(REPO_ROOT, 'config', 'schemas'))) copyFileSync(join(REPO_ROOT, 'config', 'schemas', f), join(schemas, f));
  writeFileSync(join(schemas, `${BLOBS_COLLECTION}.json`), JSON.stringify(BLOBS_SCHEMA, null, 2), { mode: 0o644 });
  const adjust = (spec: ComposeSpec): void => {
    benchAdjust(spec);
    const kg = spec.services.keygen!;
    // keygen once more for the second gateway: its keys into its own directory, its entry
    // added to the brokers' gateways.json, so every broker serves both.
    kg.command = ['sh', '-c', 'set -e\nnonstop-keygen\nGATEWAY_ID=gw2 GATEWAY_HOST=gateway2 KEYGEN_GATEWAY_SUBDIR=gateway-gw2 nonstop-keygen'];
    kg.volumes.push({ source: gateway2Keys, target: '/keys/gateway-gw2', readOnly: false, bind: true });
    const g: ServiceSpec = structuredClone(spec.services.gateway!);
    g.name = 'gateway2';
    g.environment.GATEWAY_ID = 'gw2';
    Object.assign(g.environment, knock.env);
    g.memoryBytes = knock.memoryBytes;
    g.memorySwapBytes = knock.memoryBytes;
    // Only the first gateway is on the monitoring network (its alias is gateway-metrics).
    delete g.environment.METRICS_SCRAPE_HOST;
    g.networks = ['edge'];
    g.aliases = {};
    g.volumes = [{ source: gateway2Keys, target: '/var/lib/nonstop', readOnly: false, bind: true }];
    spec.services.gateway2 = g;
    const broker = spec.services.broker!;
    // Stopped brokers stay stopped; gateway2 starts after the first broker: try it again soon.
    Object.assign(broker.environment, { RECONNECT_CAP_MS: '2000', SCHEMA_DIR: '/etc/nonstop/bench-schemas' });
    broker.volumes.push({ source: schemas, target: '/etc/nonstop/bench-schemas', readOnly: true, bind: true });
    for (const name of ['broker2', 'broker3']) {
      const b: ServiceSpec = structuredClone(broker);
      b.name = name;
      b.dependsOn = { ...b.dependsOn, gateway2: 'service_healthy' };
      spec.services[name] = b;
    }
  };
  let stack: Stack;
  try {
    stack = await Stack.up(docker(), await benchImages(), { tag: TEST_TAG, adjust });
    for (const s of ['gateway2', 'broker2', 'broker3']) await stack.waitHealthy(s);
  } catch (err) {
    tmp.cleanup();
    throw err;
  }
  return {
    stack,
    gateway2Keys,
    down: async () => {
      await stack.down();
      tmp.cleanup();
    },
  };
}

async function health(stack: Stack, service: string): Promise<{ ok: boolean; checks: Record<string, unknown> }> {
  const res = await stack.exec(service, ['/usr/local/bin/nonstop-healthcheck']);
  return JSON.parse(res.stdout) as { ok: boolean; checks: Record<string, unknown> };
}

/** Queue lanes a gateway has ready: one per broker serving it. */
export async function lanesReady(stack: Stack, gateway: GatewayName): Promise<number> {
  return (await health(stack, gateway)).checks.tunnelsReady as number;
}

/** Waits until every gateway has exactly `n` lanes ready (the brokers that run, all serving it). */
export async function waitForBrokers(stack: Stack, n: number): Promise<void> {
  for (const g of GATEWAYS) await waitFor(`${g} to have ${n} brokers' lanes ready`, async () => (await lanesReady(stack, g)) === n, 180_000, 500);
}

/** Leaves the first `n` brokers running: the others are stopped (their drain included), then the gateways have `n` lanes. */
export async function keepBrokers(stack: Stack, n: number): Promise<void> {
  for (const b of BROKERS.slice(n)) {
    const info = await stack.inspect(b);
    if (info.State.Running) await stack.container(b).stop({ t: 25 });
  }
  await waitForBrokers(stack, n);
}

/**
 * A client on `edge` for gateway2, as load.chainTarget is for the first gateway: its own
 * probe (one load client per gateway, so they do not share an event loop), trusting the
 * certificate gateway2 made on its first start.
 */
export async function gateway2Target(cs: CurvesStack, token: string): Promise<Target> {
  const client = await cs.stack.probe('edge');
  const res = await execIn(cs.stack.docker, client, ['sh', '-c', 'cat > /tmp/gateway2.crt'], { input: readFileSync(join(cs.gateway2Keys, 'tls', 'server.crt')) });
  if (res.exitCode !== 0) throw new Error(`cannot copy gateway2's certificate into its client: ${res.stderr}`);
  return { label: 'chain via gateway2', client, host: await cs.stack.ip('gateway2', 'edge'), port: 443, servername: 'gateway', ca: '/tmp/gateway2.crt', requestId: false, token };
}
