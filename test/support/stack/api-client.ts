import { request } from 'node:https';
import type { Stack } from './stack';
import { readJsonResponse, type JsonResponse } from '../http-response';

export type ApiResponse = JsonResponse;

/**
 * A client of the gateway's public API, as a user on the host would be: HTTPS to the
 * published port, trusting exactly the certificate the gateway generated on first start.
 */
export class ApiClient {
  private constructor(
    private readonly port: number,
    private readonly ca: string,
  ) {}

  /** A client of a gateway published on 127.0.0.1:`port` whose certificate is `ca` (one not run as a Stack). */
  static at(port: number, ca: string): ApiClient {
    return new ApiClient(port, ca);
  }

  static async forStack(stack: Stack): Promise<ApiClient> {
    const cert = await stack.exec('gateway', ['cat', '/var/lib/nonstop/tls/server.crt']);
    if (cert.exitCode !== 0) throw new Error(`cannot read the gateway certificate: ${cert.stderr}`);
    return new ApiClient(await stack.hostPort('gateway', 443), cert.stdout);
  }

  send(method: string, path: string, opts: { token?: string; body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<ApiResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
      if (opts.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        headers['content-length'] = String(Buffer.byteLength(opts.body));
      }
      const req = request({ host: '127.0.0.1', port: this.port, method, path, headers, ca: this.ca, servername: 'localhost', timeout: 30_000 }, (res) => {
        readJsonResponse(res).then(resolve, reject);
      });
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.end(opts.body);
    });
  }

  post(collection: string, record: unknown, token: string, headers?: Record<string, string>): Promise<ApiResponse> {
    return this.send('POST', `/v1/records/${collection}`, { token, body: JSON.stringify(record), ...(headers ? { headers } : {}) });
  }

  get(collection: string, id: string, token: string): Promise<ApiResponse> {
    return this.send('GET', `/v1/records/${collection}/${id}`, { token });
  }
}

/** Creates an API token inside the core container, as an operator would. */
export async function createToken(stack: Stack, collections: string[], scopes = 'read,write', extra: string[] = []): Promise<string> {
  const res = await stack.exec('core', ['nonstop-admin', 'token', 'create', '--collections', collections.join(','), '--scopes', scopes, ...extra]);
  if (res.exitCode !== 0) throw new Error(`nonstop-admin failed: ${res.stderr}`);
  return res.stdout.trim();
}
