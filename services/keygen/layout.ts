import { join } from 'node:path';

/**
 * Where the one-shot key generator puts each tier's material. Each directory is a separate
 * volume, mounted only by its tier (and by the generator): the gateway never sees the
 * broker's key or the CA, core never sees SSH keys, and the CA key stays in `pki`. Each
 * broker of a deployment has a directory of its own (its SSH key and client certificate);
 * `pki/brokers.json` lists every broker issued, from which each gateway's authorized_keys,
 * core's list of brokers and the CA's revocation list are derived.
 */
export function keyLayout(root: string, gatewaySubdir = 'gateway', brokerSubdir = 'broker') {
  const gateway = join(root, gatewaySubdir);
  const broker = join(root, brokerSubdir);
  const core = join(root, 'core');
  const pki = join(root, 'pki');
  return {
    pki: { dir: pki, caCert: join(pki, 'ca.crt'), caKey: join(pki, 'ca.key'), brokers: join(pki, 'brokers.json') },
    gateway: {
      dir: gateway,
      hostKey: join(gateway, 'ssh', 'ssh_host_ed25519_key'),
      authorizedKeys: join(gateway, 'authorized_keys'),
      queuePassword: join(gateway, 'queue.password'),
      knockSecret: join(gateway, 'knock.secret'),
    },
    broker: {
      dir: broker,
      sshKey: join(broker, 'id_ed25519'),
      gatewaysFile: join(broker, 'gateways.json'),
      caCert: join(broker, 'ca.crt'),
      clientCert: join(broker, 'client.crt'),
      clientKey: join(broker, 'client.key'),
      knockSecret: (gatewayId: string) => join(broker, `knock-${gatewayId}.secret`),
    },
    core: {
      dir: core,
      serverCert: join(core, 'server.crt'),
      serverKey: join(core, 'server.key'),
      caCert: join(core, 'ca.crt'),
      crl: join(core, 'ca.crl'),
      brokerNames: join(core, 'brokers'),
      /** The key-encryption keys for records at rest (CORE_DATA_KEYS_FILE): beside core's TLS key, never on its data volume. */
      dataKeys: join(core, 'data-keys.json'),
    },
  };
}

export type KeyLayout = ReturnType<typeof keyLayout>;
