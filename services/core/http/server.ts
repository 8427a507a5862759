import { createServer, type Server } from 'node:https';
import type { RequestListener } from 'node:http';
import type { Logger } from '../../common/log/logger';
import type { ClientIdentity } from './client-identity';
import { ServerCertificate } from './server-certificate';

/** How often core looks at CLIENT_CA_FILE, CLIENT_CRL_FILE and CLIENT_NAMES_FILE (and TLS_CERT_FILE, TLS_KEY_FILE) for changes. */
export const CLIENT_IDENTITY_POLL_MS = 2000;

/**
 * Core's HTTPS server: TLS 1.3 only, a client certificate required and verified against the
 * deployment CA and its CRL. When the identity files or the server certificate files change
 * the new CA, CRL and pair apply to the next handshakes (setSecureContext); connections
 * already open keep theirs, and the app re-checks their client. services/core/main.ts and
 * the tests' startCoreServer both build it here. A fixed pair (`{ cert, key }`) is not
 * followed.
 */
export function createCoreHttpsServer(tls: { cert: string; key: string } | ServerCertificate, identity: ClientIdentity, app: RequestListener, log: Logger): { server: Server; stopWatching: () => void } {
  const pair = (): { cert: string; key: string } => (tls instanceof ServerCertificate ? { cert: tls.current().cert, key: tls.current().key } : tls);
  const context = () => ({ ...pair(), ...identity.secureContextOptions(), minVersion: 'TLSv1.3' as const });
  const server = createServer({ ...context(), requestCert: true, rejectUnauthorized: true }, app);
  server.on('tlsClientError', (err) => log.info('tls handshake refused', { err: err.message }));
  const apply = (): void => server.setSecureContext(context());
  const stopIdentity = identity.watch(CLIENT_IDENTITY_POLL_MS, apply);
  const stopCert = tls instanceof ServerCertificate ? tls.watch(CLIENT_IDENTITY_POLL_MS, apply) : () => undefined;
  return {
    server,
    stopWatching: () => {
      stopIdentity();
      stopCert();
    },
  };
}
