import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../common/errors/config-error';
import type { KeyLayout } from './layout';

/** The tiers whose key directories become Secrets; `pki` (the CA's key) never does. */
export const SECRET_TIERS = ['gateway', 'broker', 'core'] as const;
export type SecretTier = (typeof SECRET_TIERS)[number];

/** A Secret's data key: what a file name may be in a Secret volume. */
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;
/** A DNS-1123 subdomain: what a Secret's name and namespace may be. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export interface SecretManifest {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace?: string; labels: Record<string, string> };
  type: 'Opaque';
  data: Record<string, string>;
}

/** The Secret name the chart's `<tier>.existingSecret` value defaults to for `prefix`. */
export function secretName(prefix: string, tier: SecretTier): string {
  return `${prefix}-${tier}-keys`;
}

/**
 * Every regular file under a tier's key directory, keyed by its base name: the chart mounts
 * each Secret as one directory and points the tier's *_FILE variables into it. Nested files
 * (the gateway's ssh/ssh_host_ed25519_key) are flattened; two files with one base name
 * would overwrite each other in the Secret, so that is refused.
 */
function tierFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      const st = statSync(path);
      if (st.isDirectory()) walk(path);
      else if (st.isFile()) {
        if (!SECRET_KEY.test(name)) throw new ConfigError([`${path}: ${JSON.stringify(name)} cannot be a Secret key`]);
        if (out.has(name)) throw new ConfigError([`${path}: a second file named ${name} under ${dir}`]);
        out.set(name, readFileSync(path));
      }
    }
  };
  walk(dir);
  return out;
}

/**
 * The three tiers' keys as Kubernetes Secrets, one per tier, in a v1 List (JSON, which
 * `kubectl apply -f -` reads like YAML). Each holds only what its tier mounts in compose:
 * the gateway never gets the broker's key or the CA, core never an SSH key, and the CA's
 * private key (`pki/`) stays with the operator. Names are `<prefix>-<tier>-keys`, the chart's
 * defaults for `<tier>.existingSecret`. Every file goes in, so during a rotation's overlap
 * the `<file>.previous` keys and each tier's key-dates.json do too, and after retire they
 * are gone: `nonstop-keygen rotate X` (or `retire X`) then `nonstop-keygen k8s-secrets |
 * kubectl apply -f -` is a rotation on Kubernetes (the chart mounts each Secret as a whole
 * directory, no subPath, so kubelet's update reaches the services' file followers).
 */
export function k8sSecretList(layout: KeyLayout, opts: { prefix: string; namespace?: string | undefined }): { apiVersion: 'v1'; kind: 'List'; items: SecretManifest[] } {
  const problems: string[] = [];
  if (!DNS_SUBDOMAIN.test(opts.prefix) || opts.prefix.length > 200) problems.push(`--prefix ${JSON.stringify(opts.prefix)}: not a DNS-1123 name`);
  if (opts.namespace !== undefined && !DNS_SUBDOMAIN.test(opts.namespace)) problems.push(`--namespace ${JSON.stringify(opts.namespace)}: not a DNS-1123 name`);
  const dirs: Record<SecretTier, string> = { gateway: layout.gateway.dir, broker: layout.broker.dir, core: layout.core.dir };
  const required: Record<SecretTier, string[]> = {
    gateway: [layout.gateway.hostKey, layout.gateway.authorizedKeys, layout.gateway.queuePassword],
    broker: [layout.broker.sshKey, layout.broker.gatewaysFile, layout.broker.caCert, layout.broker.clientCert, layout.broker.clientKey],
    core: [layout.core.serverCert, layout.core.serverKey, layout.core.caCert, layout.core.brokerNames, layout.core.dataKeys],
  };
  for (const tier of SECRET_TIERS) {
    for (const file of required[tier]) {
      try {
        statSync(file);
      } catch {
        problems.push(`${file}: missing (run nonstop-keygen first)`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const items = SECRET_TIERS.map((tier): SecretManifest => {
    const files = tierFiles(dirs[tier]);
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: secretName(opts.prefix, tier),
        ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
        labels: { 'app.kubernetes.io/part-of': 'nonstop', 'app.kubernetes.io/component': tier },
      },
      type: 'Opaque',
      data: Object.fromEntries([...files].map(([k, v]) => [k, v.toString('base64')])),
    };
  });
  return { apiVersion: 'v1', kind: 'List', items };
}

/** `nonstop-keygen k8s-secrets [--prefix P] [--namespace NS]`: the arguments, checked. */
export function parseK8sSecretArgs(args: string[]): { prefix: string; namespace: string | undefined } {
  let prefix = 'nonstop';
  let namespace: string | undefined;
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i];
    const value = args[i + 1];
    if (value === undefined) throw new ConfigError([`k8s-secrets: ${flag} needs a value`]);
    if (flag === '--prefix') prefix = value;
    else if (flag === '--namespace') namespace = value;
    else throw new ConfigError([`k8s-secrets: unknown argument ${JSON.stringify(flag)} (expected --prefix NAME, --namespace NS)`]);
  }
  return { prefix, namespace };
}
