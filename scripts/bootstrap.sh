#!/usr/bin/env bash
# Brings this machine to what `npm run demo` and `npm test` need, idempotently: a Docker
# engine, the base images (pulled, or stand-ins built offline), the pinned Node.js and,
# with --test, the real peers the suite drives (redis, nginx, OpenSSH, knock, nmap...).
# A second run only checks and returns.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/docker-engine.sh
source "$(dirname "$0")/lib/docker-engine.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"
# shellcheck source=lib/base-images.sh
source "$(dirname "$0")/lib/base-images.sh"
# shellcheck source=lib/promtool.sh
source "$(dirname "$0")/lib/promtool.sh"

want_test_peers=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test_peers=1 ;;
    *) die "unknown argument $arg (expected --test)" ;;
  esac
done

mkdir -p "$NONSTOP_CACHE" 2>/dev/null || need_root "creating $NONSTOP_CACHE"
ensure_docker_engine
ensure_host_node
ensure_debian_base_image
ensure_node_base_image
ensure_go_base_image
# curl: the demo sends its sample record with it.
apt_install curl

if [ "$want_test_peers" = 1 ]; then
  # Each one is a real peer of a test: redis-server (queue and ACL), nginx -t (rendered
  # config), openssh-client/server (OpenSSH against our ssh2 code), knockd (its `knock`
  # client), nmap (exposure scans), nftables and iproute2 (firewall and namespaces),
  # netcat-openbsd (raw TCP probes), tcpdump (filter compilation), shellcheck (the lint step), python3, make and g++
  # (node-gyp for ssh2's optional native binding), e2fsprogs and mount (mkfs.ext4, losetup:
  # the power-cut disk under FerretDB in the durability test, test/support/flakey-disk.ts),
  # libfaketime (the Jepsen test's broker clock offset: its LD_PRELOAD library is
  # bind-mounted into a broker container, test/security/jepsen/nemesis.ts), python3-venv
  # (the virtualenv of the PyPI scanners: hadolint, ssh-audit; scripts/lib/scanners.sh).
  apt_install redis-server nginx openssh-client openssh-server knockd nmap nftables netcat-openbsd shellcheck \
    iproute2 tcpdump python3 python3-venv make g++ ca-certificates e2fsprogs mount libfaketime
  # promtool checks and tests the alert rules (deploy/monitoring/rules/).
  ensure_promtool
fi
log "bootstrap done"
