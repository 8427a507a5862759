import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type Docker from 'dockerode';
import { sequenceToSend, timeCandidates, type TimeSpec } from '../../../services/common/knock/sequence';
import { upStack } from '../../support/stack/fixture';
import { gatewayKnockSpec, gatewayMetrics, knockUntilOpen, knocksAcceptedFrom, logEntries, metricValue, unusedSequence } from '../../support/stack/gateway-door';
import { execIn, type Stack } from '../../support/stack/stack';
import { waitFor } from '../../support/wait';

/**
 * The time-based door with the demo's default settings, from the attacker's side: a guesser
 * sending random SYNs into the knock range from one address, and an eavesdropper replaying
 * a broker-style knock after the gateway restarted. Knocks are sent with knockd's `knock`
 * client from probe containers on the edge network; the right sequences are computed from
 * the gateway's own secret and settings, as a broker computes them.
 */
describe('the knock door with its default settings, against a guesser and a replayer', function () {
  this.timeout(600_000);
  let stack: Stack;
  let gw: string;
  let spec: TimeSpec;

  const run = (c: Docker.Container, cmd: string[], timeoutMs = 60_000) => execIn(stack.docker, c, cmd, { timeoutMs });
  const knockArgs = (ports: readonly number[], delayMs: number): string[] => ['knock', '-d', String(delayMs), gw, ...ports.map(String)];
  /** The SSH banner through a plain TCP connection; empty when the port stays silent. */
  const banner = async (c: Docker.Container): Promise<string> => (await run(c, ['sh', '-c', `nc -w 2 ${gw} 2222 </dev/null | head -c 64`])).stdout;
  const addressOf = (c: Docker.Container): Promise<string> => stack.addressOf(c);

  before(async () => {
    stack = await upStack();
    gw = await stack.ip('gateway', 'edge');
    // The settings the gateway runs with, and its secret, as the broker has them.
    spec = await gatewayKnockSpec(stack);
    assert.deepEqual([spec.length, spec.rangeStart, spec.rangeEnd], [8, 40000, 40999], 'the demo no longer runs the defaults this test is about');
  });

  after(async () => {
    await stack?.down();
  });

  it('throttles one address sending random SYNs into the range: counted, logged once, its correct knock refused while the same knock opens from another address', async () => {
    const alice = await stack.probe('edge');
    const bob = await stack.probe('edge');
    const before = await gatewayMetrics(stack);
    const guesses = Array.from({ length: 150 }, () => spec.rangeStart + randomInt(spec.rangeEnd - spec.rangeStart + 1));
    // Sent twice below (alice, then bob), so it cannot be drawn again if refused as a replay:
    // its nonce is one the gateway has not seen used in this window.
    const right = await unusedSequence(stack, spec);
    // The guesses, then at once the right knock, from the same address.
    const sent = await run(alice, ['sh', '-c', `${knockArgs(guesses, 1).join(' ')} && ${knockArgs(right, 10).join(' ')}`]);
    assert.equal(sent.exitCode, 0, sent.stderr);
    // Read at once: the gauge shows sources over budget now, and alice's first attempt comes back 6 s on.
    await waitFor('the throttled-sources gauge', async () => metricValue(await gatewayMetrics(stack), 'nonstop_knock_sources_throttled') >= 1);
    // 158 SYNs, of which the budget (10) started attempts, and a few more may have continued one.
    // The gauge is refreshed each second and the counter as the sniffer reads the burst, so the
    // gauge can show alice before the counter has all her SYNs: the counter only rises, wait for it.
    const floor = 158 - 10 - 10;
    let throttled = 0;
    await waitFor(`${floor} SYNs counted as throttled`, async () => (throttled = metricValue(await gatewayMetrics(stack), 'nonstop_knock_syns_total', 'outcome="throttled"') - metricValue(before, 'nonstop_knock_syns_total', 'outcome="throttled"')) >= floor, 20_000, 200).catch(
      () => undefined,
    );
    assert.ok(throttled >= floor, `only ${throttled} SYNs counted as throttled`);
    const aliceIp = await addressOf(alice);
    const lines = (await stack.logs('gateway')).split('\n').filter((l) => l.includes('knock budget spent') && l.includes(`"src":"${aliceIp}"`));
    assert.ok(lines.length >= 1 && lines.length <= 2, `${lines.length} throttle log lines for ${throttled} throttled SYNs`);

    assert.equal(await banner(alice), '', 'the throttled address got in with the right knock');
    // The same knock, unused (it opened nothing), from another address: it was right.
    const bobIp = await addressOf(bob);
    assert.equal((await run(bob, knockArgs(right, 10))).exitCode, 0);
    // Look at the port once the gateway has taken the knock, not while it may still be reading it.
    await waitFor("the gateway to accept bob's knock", async () => (await knocksAcceptedFrom(stack, bobIp)) > 0, 30_000, 200).catch(() => undefined);
    assert.match(await banner(bob), /^SSH-2\.0-nonstop/, `the right knock did not open from another address; the gateway's lines for it: ${JSON.stringify((await logEntries(stack, 'gateway')).filter((e) => e.src === bobIp))}`);

    // Throttled, not banned: one attempt comes back every KNOCK_SOURCE_REFILL_SECONDS (6 s).
    // A knock while still throttled costs nothing, so trying again until it works is fair.
    await waitFor(
      'the throttled address to get in once its budget refilled',
      async () => {
        await run(alice, knockArgs(sequenceToSend(spec, Date.now()), 10));
        return /^SSH-2\.0-/.test(await banner(alice));
      },
      60_000,
      1000,
    );
  });

  it('refuses a recorded broker-style knock replayed from another address after the gateway was killed and restarted; a fresh knock still opens', async () => {
    const broker = await stack.probe('edge');
    const eve = await stack.probe('edge');
    // A knock as the broker makes it (a fresh nonce, the current window, its 10 ms gap); it opens.
    // Drawn again, as a broker does, if its nonce repeated one used in the window.
    const { ports: recorded } = await knockUntilOpen(stack, broker, spec, gw, await addressOf(broker));
    assert.match(await banner(broker), /^SSH-2\.0-nonstop/, 'the recorded knock was not a working one');

    // SIGKILL: nothing is flushed on the way down; what was recorded had to be on disk already.
    await stack.container('gateway').kill();
    await stack.container('gateway').start();
    await stack.waitHealthy('gateway');
    gw = await stack.ip('gateway', 'edge');
    // The replay is in time: the gateway would take this sequence now, were it not used.
    const offered = timeCandidates(spec, recorded[0]!, Date.now()).map((c) => c.ports.join(','));
    assert.ok(offered.includes(recorded.join(',')), 'the restart took so long that the recorded window passed; the replay would prove nothing');

    const before = metricValue(await gatewayMetrics(stack), 'nonstop_knock_syns_total', 'outcome="replay"');
    assert.equal((await run(eve, knockArgs(recorded, 10))).exitCode, 0);
    // The gateway saw the whole sequence and refused it as used (not merely missed it); only
    // then is the port's silence the refusal's, not a knock still on its way in.
    await waitFor('the replay to be counted', async () => metricValue(await gatewayMetrics(stack), 'nonstop_knock_syns_total', 'outcome="replay"') === before + 1, 30_000, 200);
    assert.equal(await banner(eve), '', 'the replayed knock opened the SSH port after the restart');

    await knockUntilOpen(stack, eve, spec, gw, await addressOf(eve));
    assert.match(await banner(eve), /^SSH-2\.0-nonstop/, 'a fresh knock did not open after the restart');
  });
});
