import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type Docker from 'dockerode';

/**
 * A BuildKit session over the Docker API, offering build secrets (what `docker build
 * --secret id=ca,src=...` does in the CLI). dockerode's own session offers registry auth
 * only; this one serves `moby.buildkit.secrets.v1.Secrets` and the gRPC health check the
 * daemon uses to keep a session alive. The secret travels over the session, never into a
 * layer.
 */
export interface BuildSession {
  id: string;
  close: () => void;
}

const PROTO_DIR = join(__dirname, '..', '..', '..', '..', 'test', 'support', 'stack', 'proto');

export async function openBuildSession(docker: Docker, secrets: Record<string, Buffer>): Promise<BuildSession> {
  const id = randomUUID();
  const methods = ['/moby.buildkit.secrets.v1.Secrets/GetSecret', '/grpc.health.v1.Health/Check'];
  const socket = await new Promise<Socket>((resolve, reject) => {
    docker.modem.dial(
      {
        method: 'POST',
        path: '/session',
        hijack: true,
        headers: {
          Upgrade: 'h2c',
          'X-Docker-Expose-Session-Uuid': id,
          'X-Docker-Expose-Session-Name': 'nonstop-e2e',
          'X-Docker-Expose-Session-Sharedkey': '',
          'X-Docker-Expose-Session-Grpcmethod': methods,
        },
        statusCodes: { 101: true, 200: true, 500: 'server error' },
      },
      (err: unknown, sock: unknown) => (err ? reject(err instanceof Error ? err : new Error(JSON.stringify(err))) : resolve(sock as Socket)),
    );
  });
  const server = new grpc.Server();
  const definition = protoLoader.loadSync([join(PROTO_DIR, 'secrets.proto'), join(PROTO_DIR, 'health.proto')], { keepCase: true, enums: Number });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    moby: { buildkit: { secrets: { v1: { Secrets: { service: grpc.ServiceDefinition } } } } };
    grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } };
  };
  server.addService(pkg.moby.buildkit.secrets.v1.Secrets.service, {
    GetSecret: (call: grpc.ServerUnaryCall<{ ID: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const data = secrets[call.request.ID];
      if (!data) return callback({ code: grpc.status.NOT_FOUND, details: `secret ${call.request.ID} not found` });
      callback(null, { data });
    },
  });
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { status: 1 }),
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  injector.injectConnection(socket);
  return {
    id,
    close: () => {
      server.forceShutdown();
      socket.destroy();
    },
  };
}
