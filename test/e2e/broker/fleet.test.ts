import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createToken } from '../../support/stack/api-client';
import type { ComposeSpec, ServiceSpec } from '../../support/stack/compose-config';
import { upStack } from '../../support/stack/fixture';
import type { Stack } from '../../support/stack/stack';
import { readJsonResponse, type JsonResponse } from '../../support/http-response';
import { tempDir } from '../../support/tmp';
import { waitFor } from '../../support/wait';

/**
 * M brokers × N gateways (issue 15.4), on one stack of real containers: compose.yaml's
 * services plus gateway2 and gateway3 (their own keys, from keygen run once per gateway as
 * docs/deploying.md says) and broker2 (the same broker identity, its own Redis). Each
 * broker reads its gateway list from a file of its own in a host directory the test
 * rewrites: `broker` follows its file by polling, `broker2` only on SIGHUP (its poll is an
 * hour), so each path is shown to work on its own.
 *
 *   1. both brokers serve gw1 and gw2; gw3 runs but no broker serves it (503 no_tunnel)
 *   2. under write load on gw1 and gw2: gw3 added and gw2 removed in both files; gw3
 *      serves, gw2 answers 503 no_tunnel within a bounded wait (measured), no broker restarted
 *   3. a bad file for both brokers: each refuses it with one log line and keeps serving
 *   4. under load on gw1 and gw3: `broker` SIGKILLed and not restarted; both gateways keep
 *      serving through broker2, and every write acknowledged in the whole test reads back
 *   5. broker2 SIGKILLed too: gw1 and gw3, every broker gone, answer 503 no_tunnel (measured)
 */
describe('a fleet: two brokers serving changing gateways, one broker killed, then all', function () {
  this.timeout(1_200_000);

  const FLEET_DIR = '/etc/nonstop/fleet';
  const GATEWAYS = ['gateway', 'gateway2', 'gateway3'] as const;
  type GatewayService = (typeof GATEWAYS)[number];

  let stack: Stack | undefined;
  let tmp: { dir: string; cleanup: () => void } | undefined;
  let fleet: string;
  let token: string;
  const endpoints = new Map<GatewayService, { port: number; ca: string }>();
  /** Every gateway entry keygen wrote (gw1, gw2, gw3), as the brokers' files take them. */
  let entries: { id: string }[];
  /** Every write acknowledged with 201 in the whole test: read back before the last broker goes. */
  const acknowledged: { id: string; title: string; via: GatewayService }[] = [];
  const run = randomBytes(3).toString('hex');
  let seq = 0;

  const s = (): Stack => {
    if (!stack) throw new Error('no stack');
    return stack;
  };

  /** One HTTPS request to a gateway's published port, on a connection of its own. */
  function send(via: GatewayService, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<JsonResponse> {
    const ep = endpoints.get(via)!;
    return new Promise((resolve, reject) => {
      const h: Record<string, string> = { ...headers, authorization: `Bearer ${token}` };
      if (body !== undefined) {
        h['content-type'] = 'application/json';
        h['content-length'] = String(Buffer.byteLength(body));
      }
      const req = request({ host: '127.0.0.1', port: ep.port, method, path, headers: h, ca: ep.ca, servername: 'localhost', agent: false, timeout: 30_000 }, (res) => {
        readJsonResponse(res).then(resolve, reject);
      });
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** A write of a unique record through `via`; a 201 is remembered for the read-back. */
  async function write(via: GatewayService): Promise<string> {
    const title = `fleet-${run}-${seq++}`;
    try {
      const res = await send(via, 'POST', '/v1/records/notes', JSON.stringify({ title }), { 'idempotency-key': randomUUID() });
      if (res.status === 201) acknowledged.push({ id: (res.json as { id: string }).id, title, via });
      const code = (res.json as { error?: { code?: string } } | undefined)?.error?.code;
      return res.status === 201 ? '201' : `${res.status} ${code ?? ''}`.trim();
    } catch (err) {
      return `network ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
  }

  /** Loads still writing: a step that fails stops its own in afterEach, not leaving it to run into the next. */
  const running = new Set<{ stop: () => Promise<void> }>();

  /** Writers on each of `via` until stopped; answers counted per gateway and phase. */
  function load(via: GatewayService[], perGateway = 2): { tally: Map<string, Map<string, number>>; acks: (g: GatewayService) => number; stop: () => Promise<void> } {
    let stopped = false;
    const tally = new Map<string, Map<string, number>>();
    const loops = via.flatMap((g) =>
      Array.from({ length: perGateway }, async () => {
        while (!stopped) {
          const answer = await write(g);
          const t = tally.get(g) ?? new Map<string, number>();
          t.set(answer, (t.get(answer) ?? 0) + 1);
          tally.set(g, t);
          // Paced, so that the read-back of every acknowledged write stays short; a client
          // that met an error backs off a little more, as a real one would.
          await sleep(answer === '201' ? 20 : 100);
        }
      }),
    );
    const handle = {
      tally,
      acks: (g: GatewayService) => tally.get(g)?.get('201') ?? 0,
      stop: async () => {
        stopped = true;
        running.delete(handle);
        await Promise.all(loops);
      },
    };
    running.add(handle);
    return handle;
  }

  const printTally = (label: string, tally: Map<string, Map<string, number>>): void => {
    const rows = [...tally].map(([g, t]) => `${g}: ${[...t].map(([a, n]) => `${a} x${n}`).join(', ')}`);
    process.stdout.write(`      ${label}: ${rows.join('; ')}\n`);
  };

  async function health(service: string): Promise<{ ok: boolean; checks: Record<string, unknown> }> {
    const res = await s().exec(service, ['/usr/local/bin/nonstop-healthcheck']);
    return JSON.parse(res.stdout) as { ok: boolean; checks: Record<string, unknown> };
  }
  const brokerTunnels = async (broker: string): Promise<Record<string, string>> => (await health(broker)).checks.tunnels as Record<string, string>;
  const tunnelsReady = async (gateway: GatewayService): Promise<number> => (await health(gateway)).checks.tunnelsReady as number;
  const metrics = async (service: string): Promise<string> =>
    (await s().exec(service, ['node', '-e', "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"])).stdout;

  /** The broker's log lines (JSON) whose message is `message`. */
  async function logLines(broker: string, message: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (const line of (await s().logs(broker)).split('\n')) {
      if (!line.startsWith('{')) continue;
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.message === message) out.push(o);
    }
    return out;
  }
  const RELOADED = 'BROKER_GATEWAYS_FILE reloaded';
  const REFUSED = 'BROKER_GATEWAYS_FILE refused; still serving the gateways it had';
  const UNCHANGED = 'BROKER_GATEWAYS_FILE read; no gateway changed';

  /** Replaces a broker's list whole (write, then rename), as deployment tooling would. */
  function writeFleetFile(broker: 'broker' | 'broker2', text: string): void {
    const path = join(fleet, `${broker}.json`);
    writeFileSync(`${path}.next`, text, { mode: 0o644 });
    renameSync(`${path}.next`, path);
  }
  const listOf = (ids: string[]): string => JSON.stringify({ gateways: ids.map((id) => entries.find((e) => e.id === id)!) }, null, 2);

  /**
   * Sends a write through `via` every 100 ms, each on its own (one parked until its deadline
   * does not hold up the next), until one is answered 503 no_tunnel; returns the ms from
   * `since` to that answer. Waits for the others' answers before returning.
   */
  async function msUntilNoTunnel(via: GatewayService, since: number, boundMs: number): Promise<number> {
    const others: string[] = [];
    const sent: Promise<void>[] = [];
    let first: number | undefined;
    while (first === undefined && performance.now() - since < boundMs) {
      sent.push(
        write(via).then((answer) => {
          if (answer === '503 no_tunnel') first ??= Math.round(performance.now() - since);
          else others.push(answer);
        }),
      );
      await sleep(100);
    }
    await Promise.all(sent);
    if (first === undefined) throw new Error(`${via} did not answer 503 no_tunnel within ${boundMs} ms: ${others.slice(-10).join(', ')}`);
    return first;
  }

  /** One sample of a Prometheus text exposition: the first series of `name` with all of `labels`. */
  function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!] as const));
      if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
    }
    return undefined;
  }

  before(async () => {
    tmp = tempDir('nonstop-fleet-');
    chmodSync(tmp.dir, 0o755);
    fleet = join(tmp.dir, 'fleet');
    mkdirSync(fleet, { mode: 0o755 });
    // keygen (uid 10001) writes the first lists here; the brokers read them, read-only.
    chownSync(fleet, 10001, 10001);
    // The added gateways' key directories: host directories of the services' uid, as the
    // image's own /keys/gateway is (a new named volume would be root's).
    const gatewayKeys = { gateway2: join(tmp.dir, 'gateway2-keys'), gateway3: join(tmp.dir, 'gateway3-keys') };
    for (const d of Object.values(gatewayKeys)) {
      mkdirSync(d, { mode: 0o700 });
      chownSync(d, 10001, 10001);
    }
    // keygen once per gateway into one tree (docs/deploying.md, "Keys for a fleet"), then the
    // brokers' first lists: gw1 and gw2 (all.json keeps every entry for the test).
    const keygen = [
      'set -e',
      'nonstop-keygen',
      'GATEWAY_ID=gw2 GATEWAY_HOST=gateway2 KEYGEN_GATEWAY_SUBDIR=gateway-gw2 nonstop-keygen',
      'GATEWAY_ID=gw3 GATEWAY_HOST=gateway3 KEYGEN_GATEWAY_SUBDIR=gateway-gw3 nonstop-keygen',
      `node -e 'const fs = require("fs"); const all = JSON.parse(fs.readFileSync("/keys/broker/gateways.json", "utf8")); fs.writeFileSync("/keys/fleet/all.json", JSON.stringify(all)); const first = JSON.stringify({ gateways: all.gateways.filter((g) => g.id !== "gw3") }, null, 2); for (const b of ["broker", "broker2"]) fs.writeFileSync("/keys/fleet/" + b + ".json", first, { mode: 0o644 });'`,
    ].join('\n');
    stack = await upStack({}, (spec: ComposeSpec) => {
      const fleetMount = (readOnly: boolean, target: string) => ({ source: fleet, target, readOnly, bind: true });
      const kg = spec.services.keygen!;
      kg.command = ['sh', '-c', keygen];
      kg.volumes.push({ source: gatewayKeys.gateway2, target: '/keys/gateway-gw2', readOnly: false, bind: true }, { source: gatewayKeys.gateway3, target: '/keys/gateway-gw3', readOnly: false, bind: true }, fleetMount(false, '/keys/fleet'));
      for (const [name, id] of [['gateway2', 'gw2'], ['gateway3', 'gw3']] as const) {
        const g: ServiceSpec = structuredClone(spec.services.gateway!);
        g.name = name;
        g.environment.GATEWAY_ID = id;
        // Only the first gateway is on the monitoring network (its alias is gateway-metrics).
        delete g.environment.METRICS_SCRAPE_HOST;
        g.networks = ['edge'];
        g.aliases = {};
        g.volumes = [{ source: gatewayKeys[name], target: '/var/lib/nonstop', readOnly: false, bind: true }];
        spec.services[name] = g;
      }
      const broker = spec.services.broker!;
      // "SIGKILL, not restarted": no restart policy to bring it back.
      broker.restart = 'no';
      broker.volumes.push(fleetMount(true, FLEET_DIR));
      Object.assign(broker.environment, {
        BROKER_GATEWAYS_FILE: `${FLEET_DIR}/broker.json`,
        // gateway2 and gateway3 start after this broker: try them again soon.
        RECONNECT_CAP_MS: '2000',
      });
      const broker2: ServiceSpec = structuredClone(broker);
      broker2.name = 'broker2';
      Object.assign(broker2.environment, {
        BROKER_GATEWAYS_FILE: `${FLEET_DIR}/broker2.json`,
        // An hour: this broker takes a new list only when signalled.
        BROKER_GATEWAYS_POLL_MS: '3600000',
      });
      spec.services.broker2 = broker2;
    });
    for (const svc of ['gateway2', 'gateway3', 'broker2']) await s().waitHealthy(svc);
    for (const g of GATEWAYS) {
      const cert = await s().exec(g, ['cat', '/var/lib/nonstop/tls/server.crt']);
      assert.equal(cert.exitCode, 0, cert.stderr);
      endpoints.set(g, { port: await s().hostPort(g, 443), ca: cert.stdout });
    }
    entries = (JSON.parse(readFileSync(join(fleet, 'all.json'), 'utf8')) as { gateways: { id: string }[] }).gateways;
    assert.deepEqual(entries.map((e) => e.id).sort(), ['gw1', 'gw2', 'gw3']);
    token = await createToken(s(), ['notes']);
  });

  afterEach(async () => {
    await Promise.all([...running].map((l) => l.stop()));
  });

  after(async () => {
    await stack?.down();
    tmp?.cleanup();
  });

  it('serves gw1 and gw2 from both brokers, and gw3, which no broker serves yet, answers 503 no_tunnel', async () => {
    for (const b of ['broker', 'broker2']) {
      await waitFor(`${b}'s tunnels to gw1 and gw2`, async () => JSON.stringify(await brokerTunnels(b)) === JSON.stringify({ gw1: 'up', gw2: 'up' }), 120_000, 1000);
    }
    for (const g of ['gateway', 'gateway2'] as const) await waitFor(`${g}'s two lanes`, async () => (await tunnelsReady(g)) === 2, 60_000, 500);
    assert.equal(await tunnelsReady('gateway3'), 0);
    for (const g of ['gateway', 'gateway2'] as const) assert.equal(await waitFor(`a write through ${g}`, async () => ((await write(g)) === '201' ? '201' : undefined), 60_000, 250), '201');
    assert.equal(await write('gateway3'), '503 no_tunnel');
  });

  it('adds gw3 and removes gw2 under load without restarting a broker (file change on one, SIGHUP on the other): gw3 serves, gw2 answers 503 no_tunnel promptly', async () => {
    const startedAt = await Promise.all(['broker', 'broker2'].map(async (b) => (await s().inspect(b)).State.StartedAt));
    // Positive control for the gauges checked below: gw2's exists while it is served.
    for (const b of ['broker', 'broker2']) assert.equal(sample(await metrics(b), 'nonstop_broker_tunnel_up', { gateway: 'gw2' }), 1, `${b} exports no gw2 tunnel gauge`);
    const l = load(['gateway', 'gateway2']);
    await waitFor('writes through gw1 and gw2', () => l.acks('gateway') >= 10 && l.acks('gateway2') >= 10, 120_000, 200);
    writeFleetFile('broker', listOf(['gw1', 'gw3']));
    writeFleetFile('broker2', listOf(['gw1', 'gw3']));
    // At least one, not exactly one: a second reload between two looks would make an exact wait time
    // out instead of failing below, where the reload counter must be 1 and the first line the change.
    await waitFor("broker's reload by its poll", async () => (await logLines('broker', RELOADED)).length >= 1, 60_000, 500);
    // broker2 polls hourly: still serving gw2 until signalled, so gw2 is still served.
    assert.deepEqual(Object.keys(await brokerTunnels('broker2')).sort(), ['gw1', 'gw2'], 'broker2 took the new list without the signal');
    assert.equal(await waitFor('a write through gw2 while broker2 still serves it', async () => ((await write('gateway2')) === '201' ? '201' : undefined), 60_000, 250), '201');
    const signalled = performance.now();
    await s().container('broker2').kill({ signal: 'SIGHUP' });
    const toNoTunnel = await msUntilNoTunnel('gateway2', signalled, 60_000);
    process.stdout.write(`      gw2 answered 503 no_tunnel ${toNoTunnel} ms after its last broker was signalled\n`);
    await waitFor("broker2's reload on SIGHUP", async () => (await logLines('broker2', RELOADED)).length >= 1, 30_000, 500);
    for (const [b, trigger] of [['broker', 'file changed'], ['broker2', 'SIGHUP']] as const) {
      const [line] = await logLines(b, RELOADED);
      assert.deepEqual([line!.trigger, line!.added, line!.removed, line!.gateways], [trigger, ['gw3'], ['gw2'], ['gw1', 'gw3']], `${b}: ${JSON.stringify(line)}`);
    }
    await waitFor('gw3 served by both brokers', async () => (await tunnelsReady('gateway3')) === 2, 120_000, 500);
    await l.stop();
    printTally('answers while the lists changed', l.tally);
    const l3 = load(['gateway', 'gateway3']);
    await waitFor('writes through gw3', () => l3.acks('gateway3') >= 10 && l3.acks('gateway') >= 5, 120_000, 200);
    await l3.stop();
    printTally('after', l3.tally);
    assert.equal(await write('gateway2'), '503 no_tunnel');
    assert.equal(await tunnelsReady('gateway2'), 0);
    for (const [i, b] of (['broker', 'broker2'] as const).entries()) {
      assert.deepEqual(await brokerTunnels(b), { gw1: 'up', gw3: 'up' });
      const m = await metrics(b);
      assert.equal(sample(m, 'nonstop_broker_tunnel_up', { gateway: 'gw2' }), undefined, `${b} still exports gw2's tunnel gauge`);
      assert.equal(sample(m, 'nonstop_broker_tunnel_connects_total', { gateway: 'gw2' }), undefined, `${b} still exports gw2's connects`);
      assert.equal(sample(m, 'nonstop_broker_tunnel_up', { gateway: 'gw3' }), 1);
      assert.equal(sample(m, 'nonstop_broker_gateway_reloads_total', { outcome: 'applied' }), 1);
      assert.equal(sample(m, 'nonstop_broker_gateways'), 2);
      // Not restarted: the same container start, the same process.
      const info = await s().inspect(b);
      assert.equal(info.State.StartedAt, startedAt[i]);
      assert.equal(info.RestartCount, 0);
    }
  });

  it('refuses a bad file with one log line per broker and keeps serving the list it has', async () => {
    const bad = '{"gateways": [ {"id": "gw1"';
    writeFleetFile('broker', bad);
    writeFleetFile('broker2', bad);
    await s().container('broker2').kill({ signal: 'SIGHUP' });
    for (const b of ['broker', 'broker2']) await waitFor(`${b}'s refusal`, async () => (await logLines(b, REFUSED)).length >= 1, 30_000, 500);
    // Several of broker's polls later (2 s apart), still the one line.
    await sleep(7000);
    for (const b of ['broker', 'broker2']) {
      const lines = await logLines(b, REFUSED);
      assert.equal(lines.length, 1, `${b} logged the refusal ${lines.length} times`);
      assert.match(String(lines[0]!.problem), /^BROKER_GATEWAYS_FILE="\/etc\/nonstop\/fleet\/broker2?\.json": not valid JSON$/);
      assert.deepEqual(await brokerTunnels(b), { gw1: 'up', gw3: 'up' });
      assert.equal(sample(await metrics(b), 'nonstop_broker_gateway_reloads_total', { outcome: 'refused' }), 1);
    }
    for (const g of ['gateway', 'gateway3'] as const) {
      assert.equal(await write(g), '201');
      assert.equal(await tunnelsReady(g), 2);
    }
    // The good list back (the one in use): nothing to change. Counted from before, so a line an
    // earlier step wrote does not stand in for this read.
    const unchangedBefore = await Promise.all(['broker', 'broker2'].map(async (b) => (await logLines(b, UNCHANGED)).length));
    writeFleetFile('broker', listOf(['gw1', 'gw3']));
    writeFleetFile('broker2', listOf(['gw1', 'gw3']));
    await s().container('broker2').kill({ signal: 'SIGHUP' });
    for (const [i, b] of ['broker', 'broker2'].entries()) await waitFor(`${b} to read the good list again`, async () => (await logLines(b, UNCHANGED)).length > unchangedBefore[i]!, 30_000, 500);
  });

  it('keeps both gateways serving through broker2 when broker is SIGKILLed under load, and every acknowledged write reads back', async () => {
    const l = load(['gateway', 'gateway3']);
    await waitFor('writes through gw1 and gw3', () => l.acks('gateway') >= 10 && l.acks('gateway3') >= 10, 120_000, 200);
    const before = { gateway: l.acks('gateway'), gateway3: l.acks('gateway3') };
    await s().container('broker').kill({ signal: 'SIGKILL' });
    await waitFor('writes through both gateways after the kill', () => l.acks('gateway') >= before.gateway + 20 && l.acks('gateway3') >= before.gateway3 + 20, 120_000, 200);
    await l.stop();
    printTally('answers across the broker kill', l.tally);
    const info = await s().inspect('broker');
    assert.equal(info.State.Running, false, 'the killed broker is running again');
    assert.equal(info.State.ExitCode, 137);
    for (const g of ['gateway', 'gateway3'] as const) assert.equal(await tunnelsReady(g), 1);
    // Every write acknowledged in this whole test, whichever gateway and broker took it.
    const written = [...acknowledged];
    assert.ok(written.length >= 60, `only ${written.length} writes acknowledged`);
    const missing: string[] = [];
    for (let i = 0; i < written.length; i += 8) {
      await Promise.all(
        written.slice(i, i + 8).map(async (a) => {
          const res = await send('gateway', 'GET', `/v1/records/notes/${a.id}`);
          if (res.status !== 200 || !res.text.includes(`"${a.title}"`)) missing.push(`${a.id} (${a.via}): ${res.status} ${res.text.slice(0, 120)}`);
        }),
      );
    }
    process.stdout.write(`      ${written.length} acknowledged writes read back, ${missing.length} missing\n`);
    assert.deepEqual(missing, []);
  });

  it('answers 503 no_tunnel promptly on every gateway once its last broker is gone', async () => {
    // Positive control: both still serve through broker2 right before it goes.
    for (const g of ['gateway', 'gateway3'] as const) assert.equal(await write(g), '201');
    const killed = performance.now();
    await s().container('broker2').kill({ signal: 'SIGKILL' });
    const times = await Promise.all((['gateway', 'gateway3'] as const).map((g) => msUntilNoTunnel(g, killed, 60_000)));
    process.stdout.write(`      503 no_tunnel after the last broker's SIGKILL: gw1 ${times[0]} ms, gw3 ${times[1]} ms\n`);
    for (const g of ['gateway', 'gateway3'] as const) assert.equal(await tunnelsReady(g), 0);
  });
});
