import assert from 'node:assert/strict';
import { ConfigError } from '../../../../services/common/errors/config-error';
import { parseEnv } from '../../../../services/common/config/env';
import { METRICS_SCRAPE_HOST_ENV, resolveScrapeAddress, type LocalInterfaces } from '../../../../services/common/metrics/scrape-address';

/** A container on two networks, as the broker is: edge (eth0) and private (eth1). */
const interfaces = (): LocalInterfaces => ({
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
  eth0: [{ address: '172.30.0.4', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:ac:1e:00:04', internal: false, cidr: '172.30.0.4/16' }],
  eth1: [{ address: '172.31.0.7', netmask: '255.255.0.0', family: 'IPv4', mac: '02:42:ac:1f:00:07', internal: false, cidr: '172.31.0.7/16' }],
});
const resolvesTo = (...addresses: string[]) => () => Promise.resolve(addresses.map((address) => ({ address, family: 4 })));

describe('METRICS_SCRAPE_HOST in a configuration', () => {
  const parse = (value: string | undefined) => parseEnv({ METRICS_SCRAPE_HOST: METRICS_SCRAPE_HOST_ENV }, value === undefined ? {} : { METRICS_SCRAPE_HOST: value }).METRICS_SCRAPE_HOST;

  it('is optional, and takes a network alias or an address', () => {
    assert.equal(parse(undefined), undefined);
    assert.equal(parse('broker-metrics'), 'broker-metrics');
    assert.equal(parse('172.31.0.7'), '172.31.0.7');
  });

  it('refuses a value that is no host name, on one line naming the variable', () => {
    assert.throws(() => parse('broker metrics'), (err: unknown) => err instanceof ConfigError && err.problems.length === 1 && err.problems[0]!.startsWith('METRICS_SCRAPE_HOST='));
  });
});

describe('resolveScrapeAddress (METRICS_SCRAPE_HOST)', () => {
  it("takes the one address of this container the name resolves to, with that address's network", async () => {
    assert.deepEqual(await resolveScrapeAddress('METRICS_SCRAPE_HOST', 'broker-metrics', { resolve: resolvesTo('172.31.0.7'), interfaces }), { address: '172.31.0.7', family: 4, subnet: '172.31.0.7/16' });
  });

  it("takes this container's own address when the name is shared with another container (two brokers)", async () => {
    const found = await resolveScrapeAddress('METRICS_SCRAPE_HOST', 'broker-metrics', { resolve: resolvesTo('172.31.0.9', '172.31.0.7'), interfaces });
    assert.equal(found.address, '172.31.0.7');
  });

  it('refuses a name that resolves to no address of this container, naming the variable', async () => {
    await assert.rejects(resolveScrapeAddress('METRICS_SCRAPE_HOST', 'core-metrics', { resolve: resolvesTo('172.31.0.9'), interfaces }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems[0]!, /^METRICS_SCRAPE_HOST="core-metrics": resolves to 172\.31\.0\.9, none of them an address of this container/);
      return true;
    });
  });

  it('refuses loopback: it is no network Prometheus can reach', async () => {
    await assert.rejects(resolveScrapeAddress('METRICS_SCRAPE_HOST', 'localhost', { resolve: resolvesTo('127.0.0.1'), interfaces }), ConfigError);
  });

  it("refuses a name that resolves to both of this container's networks: it would listen on the edge too", async () => {
    await assert.rejects(resolveScrapeAddress('METRICS_SCRAPE_HOST', 'broker', { resolve: resolvesTo('172.30.0.4', '172.31.0.7'), interfaces }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems[0]!, /several addresses of this container \(172\.30\.0\.4, 172\.31\.0\.7\)/);
      return true;
    });
  });

  it('refuses a name that does not resolve, with the resolver code', async () => {
    const fail = (): Promise<never> => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }));
    await assert.rejects(resolveScrapeAddress('METRICS_SCRAPE_HOST', 'nowhere', { resolve: fail, interfaces }), (err: unknown) => err instanceof ConfigError && /cannot be resolved \(ENOTFOUND\)/.test(err.problems[0]!));
  });

  it('resolves a real name through the system resolver: localhost is loopback, so refused', async () => {
    // Positive path of the default resolver, with no network: localhost always resolves.
    await assert.rejects(resolveScrapeAddress('METRICS_SCRAPE_HOST', 'localhost'), (err: unknown) => err instanceof ConfigError && /resolves to .*127\.0\.0\.1|::1/.test(err.problems[0]!));
  });
});
