import Docker from 'dockerode';

/** The local Docker engine (the one scripts/bootstrap.sh made sure answers). */
export function docker(): Docker {
  return new Docker({ socketPath: process.env.DOCKER_SOCKET ?? '/var/run/docker.sock' });
}
