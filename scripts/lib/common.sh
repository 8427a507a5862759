# shellcheck shell=bash disable=SC2034 # its settings are read by the scripts that source it
# Shared by the scripts in scripts/: paths, logging and the tools we call by full path.
# Sourced, never run.

NONSTOP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Survives fresh clones on the same machine, so a second run reuses what the first fetched.
NONSTOP_CACHE="${NONSTOP_CACHE:-/var/cache/nonstop}"
NODE_VERSION="$(cat "$NONSTOP_ROOT/.node-version")"
NODE_MAJOR="${NODE_VERSION%%.*}"
NONSTOP_NODE_HOME="$NONSTOP_CACHE/node-v$NODE_VERSION"
# The Go toolchain of the golang base image and of host-side Go builds (from the Go module
# proxy; Dockerfile.core's GO_IMAGE names the same minor version).
GO_VERSION="go1.26.8"
NONSTOP_GO="$NONSTOP_CACHE/$GO_VERSION"

# Debian's client has BuildKit built in (build secrets); /usr/local/bin/docker here is a
# newer client without buildx, so the Debian one goes first.
export PATH="/usr/bin:/usr/sbin:$PATH"
export DOCKER_BUILDKIT=1
export COMPOSE_DOCKER_CLI_BUILD=1

log() { printf '[nonstop %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Only root can install packages or start dockerd; say so instead of failing halfway.
need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (run as root or install it yourself)"
}

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  need_root "installing ${missing[*]}"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get -o Acquire::Retries=5 update -qq >>"$NONSTOP_CACHE/apt.log" 2>&1 || die "apt-get update failed; see $NONSTOP_CACHE/apt.log"
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=5 install -y -qq --no-install-recommends "${missing[@]}" >>"$NONSTOP_CACHE/apt.log" 2>&1 \
    || die "apt-get install ${missing[*]} failed; see $NONSTOP_CACHE/apt.log"
}

# The compose implementation present: the v2 plugin where it exists, else Debian's v1.29.
compose_cmd() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose"
  else
    return 1
  fi
}

# Runs one named phase of a script and prints how long it took: `phase NAME cmd args...`.
# Runs in this shell (a phase may export what later ones use); a failure ends the script.
phase() {
  local name="$1" started status=0; shift
  started=$(date +%s)
  log "phase: $name"
  "$@" || status=$?
  if [ "$status" != 0 ]; then
    log "phase: $name failed (exit $status) after $(( $(date +%s) - started )) s"
    exit "$status"
  fi
  log "phase: $name took $(( $(date +%s) - started )) s"
}
