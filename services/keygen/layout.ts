import { join } from 'node:path';

/**
 * Where the one-shot key generator puts each tier's material. Each directory is a separate
 * volume, mounted only by its tier (and by the generator): the gateway never sees the
 * broker's key or the CA, core never sees SSH keys, and the CA key stays in `pki`.
 */
export function keyLayout(root: string, gatewaySubdir = 'gateway') {
  const gateway = join(root, gatewaySubdir);
  const broker = join(root, 'broker');
  const core = join(root, 'core');
  const pki = join(root, 'pki');
  return {
    pki: { dir: pki, caCert: join(pki, 'ca.crt'), caKey: join(pki, 'ca.key') },
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
    core: { dir: core, serverCert: join(core, 'server.crt'), serverKey: join(core, 'server.key'), caCert: join(core, 'ca.crt') },
  };
}

export type KeyLayout = ReturnType<typeof keyLayout>;
