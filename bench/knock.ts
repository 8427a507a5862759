import type Docker from 'dockerode';
import { setTimeout as sleep } from 'node:timers/promises';
import { execIn, type Stack } from '../test/support/stack/stack';
import { coresUsed, cpuSnapshot, memoryMiB } from './container-stats';
import { failures, quantile, round } from './stats';
import type { Row } from './report';

const SEQUENCE = '7000,8000,9000';

/**
 * The baseline: knockd, the classic port-knock daemon, guarding a port with nftables the
 * same way (a set with timeouts), on the same network, measured by the same client.
 */
async function startKnockd(stack: Stack): Promise<{ box: Docker.Container; ip: string }> {
  const box = await stack.docker.createContainer({
    name: `${stack.project}_knockd`,
    Image: stack.images.probe,
    Labels: { 'nonstop.test': stack.project },
    HostConfig: { NetworkMode: stack.name('edge'), CapDrop: ['ALL'], CapAdd: ['NET_ADMIN', 'NET_RAW'] },
    Cmd: [
      'sh',
      '-c',
      [
        `printf 'table inet kd {\\n set allowed { type ipv4_addr; flags timeout; }\\n chain input { type filter hook input priority 0; policy accept; tcp dport 2222 ip saddr @allowed accept; tcp dport { 2222, ${SEQUENCE} } drop; }\\n}\\n' > /tmp/kd.nft`,
        'nft -f /tmp/kd.nft',
        `printf '[options]\\n LogFile = /dev/null\\n Interface = eth0\\n[open]\\n sequence = ${SEQUENCE}\\n seq_timeout = 5\\n tcpflags = syn\\n start_command = nft add element inet kd allowed { %%IP%% timeout 30s }\\n' > /tmp/knockd.conf`,
        '(nc -lk 2222 >/dev/null &)',
        '(nc -lk 8080 >/dev/null &)',
        'exec knockd -c /tmp/knockd.conf -i eth0',
      ].join(' && '),
    ],
  });
  await box.start();
  const info = await box.inspect();
  const ip = info.NetworkSettings.Networks[stack.name('edge')]!.IPAddress;
  await sleep(1500);
  return { box, ip };
}

async function latency(stack: Stack, client: Docker.Container, host: string, openPort: number, rounds: number): Promise<{ open: number[]; floor: number[] }> {
  const res = await execIn(stack.docker, client, ['node', '/usr/local/bin/knock-latency', host, SEQUENCE, '2222', String(openPort), String(rounds)], { timeoutMs: 300_000 });
  if (res.exitCode !== 0) throw new Error(`knock-latency failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as { open: number[]; floor: number[] };
}

/** Runs a bounded flood from `flooder` while `during` runs; returns what synflood reported. */
async function withFlood<T>(stack: Stack, flooder: Docker.Container, target: string, pps: number, seconds: number, during: () => Promise<T>): Promise<{ flood: { sent: number; pps: number }; result: T }> {
  const exec = execIn(stack.docker, flooder, ['python3', '/usr/local/bin/synflood', target, SEQUENCE, String(pps), String(seconds), '10.203.0.0/16'], { timeoutMs: (seconds + 60) * 1000 });
  await sleep(2000); // let the flood reach its rate
  const result = await during();
  const out = await exec;
  if (out.exitCode !== 0) throw new Error(`synflood failed: ${out.stderr}`);
  return { flood: JSON.parse(out.stdout) as { sent: number; pps: number }, result };
}

export async function knockBench(stack: Stack, rounds: number): Promise<Row[]> {
  const rows: Row[] = [];
  const gatewayIp = await stack.ip('gateway', 'edge');
  const client = await stack.probe('edge');
  const flooder = await stack.probe('edge');
  const knockd = await startKnockd(stack);
  const gateway = stack.container('gateway');

  // 1. Knock to open, quiet network: nonstop gateway vs knockd.
  const ours = await latency(stack, client, gatewayIp, 80, rounds);
  const theirs = await latency(stack, client, knockd.ip, 8080, rounds);
  rows.push({
    scenario: 'knock → SSH port open (quiet)',
    metric: 'p50 / p95 ms after the last knock SYN',
    value: `${round(quantile(ours.open, 0.5))} / ${round(quantile(ours.open, 0.95))}`,
    baseline: `knockd ${round(quantile(theirs.open, 0.5))} / ${round(quantile(theirs.open, 0.95))}`,
    ratio: round(quantile(ours.open, 0.5) / quantile(theirs.open, 0.5)),
    note: `${rounds} rounds; failures ${failures(ours.open)} vs ${failures(theirs.open)}; TCP connect floor p50 ${round(quantile(ours.floor, 0.5), 3)} ms`,
  });

  // 2. The same under a SYN flood of spoofed sources at the knock ports.
  const floodSeconds = 25;
  const idleA = await cpuSnapshot(gateway);
  await sleep(5000);
  const idleB = await cpuSnapshot(gateway);
  const memIdle = await memoryMiB(gateway);
  const cpu0 = await cpuSnapshot(gateway);
  const flooded = await withFlood(stack, flooder, gatewayIp, 25_000, floodSeconds, async () => {
    const lat = await latency(stack, client, gatewayIp, 80, Math.max(5, Math.floor(rounds / 2)));
    const mem = await memoryMiB(gateway);
    return { lat, mem };
  });
  const cpu1 = await cpuSnapshot(gateway);
  const health = JSON.parse((await stack.exec('gateway', ['/usr/local/bin/nonstop-healthcheck'])).stdout) as { ok: boolean };
  rows.push({
    scenario: `knock → open under a ${Math.round(flooded.flood.pps / 1000)}k pps SYN flood (spoofed sources)`,
    metric: 'p50 / p95 ms; opens',
    value: `${round(quantile(flooded.result.lat.open, 0.5))} / ${round(quantile(flooded.result.lat.open, 0.95))}; ${flooded.result.lat.open.length - failures(flooded.result.lat.open)}/${flooded.result.lat.open.length}`,
    baseline: `quiet ${round(quantile(ours.open, 0.5))} / ${round(quantile(ours.open, 0.95))}`,
    ratio: round(quantile(flooded.result.lat.open, 0.5) / quantile(ours.open, 0.5)),
    note: `flood sent ${flooded.flood.sent} SYNs at ${flooded.flood.pps} pps; gateway healthy after: ${health.ok}`,
  });
  rows.push({
    scenario: 'gateway container under that flood',
    metric: 'CPU cores; memory MiB',
    value: `${round(coresUsed(cpu0, cpu1))}; ${round(flooded.result.mem, 1)}`,
    baseline: `idle ${round(coresUsed(idleA, idleB), 3)}; ${round(memIdle, 1)}`,
    ratio: round(flooded.result.mem / memIdle),
    note: 'CPU is the whole container (tcpdump, node, nginx); ratio is memory flooded/idle',
  });
  await knockd.box.remove({ force: true });
  return rows;
}
