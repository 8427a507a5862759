#!/usr/bin/env bash
# Runs scripts/bootstrap.sh the way a new machine meets it, without taking the machine
# apart: no Docker engine answering (an isolated engine of its own, on a socket where
# nothing listens yet), no base images, an empty tool cache (so debootstrap, the Node.js
# fetch and the Go toolchain fetch really run) and no /usr/local/go (hidden by a tmpfs in
# a private mount namespace). Then checks what bootstrap promised: the engine answers and
# the three base images run. Everything it made is removed at the end.
# `npm test` runs it before the suite; it takes about two minutes.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# The base image names the bootstrap builds, from the one place that defines them.
# shellcheck source=lib/base-images.sh
source "$(dirname "$0")/lib/base-images.sh"

[ "$(id -u)" = 0 ] || die "check-fresh-bootstrap.sh needs root (a mount namespace and a Docker engine of its own)"
work=$(mktemp -d /tmp/nonstop-fresh.XXXXXX)
# The isolated engine gets a bridge of its own: with `--bridge none` dockerd deletes the
# default docker0 at start, under the machine's own engine.
bridge="nsfresh$$"
cleanup() {
  local pid=""
  [ -s "$work/docker.pid" ] && pid=$(cat "$work/docker.pid")
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  ip link del "$bridge" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip link add "$bridge" type bridge
ip addr add 10.231.255.1/24 dev "$bridge"
ip link set "$bridge" up

# Inside the namespace: hide the machine's Go, point everything at fresh places, bootstrap,
# then check the results with the same engine.
inner() {
  if [ -d /usr/local/go ]; then mount -t tmpfs -o size=1m,mode=0755 nonstop-no-go /usr/local/go; fi
  export PATH
  PATH=$(tr ':' '\n' <<<"$PATH" | awk '$0 != "/usr/local/go/bin"' | paste -sd: -)
  export NONSTOP_CACHE="$work/cache" DOCKER_HOST="unix://$work/docker.sock" NONSTOP_BUILD_NETWORK=host
  export NONSTOP_DOCKERD_ARGS="--data-root $work/data --exec-root $work/exec --pidfile $work/docker.pid --bridge $bridge --iptables=false --ip-masq=false --containerd-namespace nonstop-fresh --containerd-plugins-namespace nonstop-fresh-plugins"
  if docker info >/dev/null 2>&1; then die "an engine already answers on $DOCKER_HOST: not a fresh start"; fi
  if [ -x /usr/local/go/bin/go ]; then die "/usr/local/go is still visible"; fi
  bash "$NONSTOP_ROOT/scripts/bootstrap.sh"

  local node_v go_v debian_v
  node_v=$(docker run --rm --network none "$BASE_NODE_IMAGE" node --version)
  [ "$node_v" = "v$NODE_VERSION" ] || die "node base image runs $node_v, expected v$NODE_VERSION"
  go_v=$(docker run --rm --network none "$BASE_GO_IMAGE" go version)
  [[ "$go_v" == "go version $GO_VERSION "* ]] || die "golang base image runs '$go_v', expected $GO_VERSION"
  debian_v=$(docker run --rm --network none "$BASE_DEBIAN_IMAGE" cat /etc/debian_version)
  [[ "$debian_v" == 12.* ]] || die "debian base image is '$debian_v', expected 12.x"
  log "fresh bootstrap: engine $(docker version --format '{{.Server.Version}}') started; node $node_v, $go_v, Debian $debian_v"
}

export -f inner log die
export work bridge NONSTOP_ROOT NODE_VERSION GO_VERSION BASE_NODE_IMAGE BASE_GO_IMAGE BASE_DEBIAN_IMAGE
unshare --mount --propagation private bash -euo pipefail -c inner
