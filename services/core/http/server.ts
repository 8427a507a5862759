import { createServer, type Server } from 'node:https';
import type { RequestListener } from 'node:http';
import type { Logger } from '../../common/log/logger';
import type { ClientIdentity } from './client-identity';

/** How often core looks at CLIENT_CA_FILE, CLIENT_CRL_FILE and CLIENT_NAMES_FILE for changes. */
export const CLIENT_IDENTITY_POLL_MS = 2000;

/**
 * Core's HTTPS server: TLS 1.3 only, a client certificate required and verified against the
 * deployment CA and its CRL. When the identity files change the new CA and CRL apply to the
 * next handshakes (setSecureContext); the app re-checks connections already open.
 * services/core/main.ts and the tests' startCoreServer both build it here.
 */
export function createCoreHttpsServer(tls: { cert: string; key: string }, identity: ClientIdentity, app: RequestListener, log: Logger): { server: Server; stopWatching: () => void } {
  const context = () => ({ ...tls, ...identity.tlsOptions(), minVersion: 'TLSv1.3' as const });
  const server = createServer({ ...context(), requestCert: true, rejectUnauthorized: true }, app);
  server.on('tlsClientError', (err) => log.info('tls handshake refused', { err: err.message }));
  const stopWatching = identity.watch(CLIENT_IDENTITY_POLL_MS, () => server.setSecureContext(context()));
  return { server, stopWatching };
}
