#!/usr/bin/env bash
# Builds nonstop/gateway, nonstop/broker and nonstop/<core variant> — the one build path
# of the demo, the tests and the benchmarks. Prints "role=image" lines on stdout.
#   build-images.sh [--tag T] [--probe] [--monitoring] [--no-cache]
#     --tag T      image tag (default $NONSTOP_TAG or dev)
#     --probe      also the test client image nonstop/probe:T
#     --monitoring also nonstop/prometheus:T, the compose profile `monitoring`'s Prometheus
#     --no-cache   reuse no cached layer of ours (CI proves a cold build this way)
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"

tag="${NONSTOP_TAG:-dev}" probe=0 monitoring=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag="$2"; shift 2 ;;
    --probe) probe=1; shift ;;
    --monitoring) monitoring=1; shift ;;
    --no-cache) export NONSTOP_BUILD_NO_CACHE=1; shift ;;
    *) die "unknown argument $1 (expected --tag T, --probe, --monitoring, --no-cache)" ;;
  esac
done
build_all_images "$tag" "$probe"
if [ "$monitoring" = 1 ]; then build_monitoring_image "$tag"; fi
