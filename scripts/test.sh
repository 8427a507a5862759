#!/usr/bin/env bash
# `npm test`: bootstraps this machine (Docker engine, base images, test peers), installs
# dependencies, type-checks, lints, builds the images and runs the whole suite — unit,
# integration, security and end-to-end — printing mocha's report and a closing line
# "tests: N passed, N failed, N skipped". Extra arguments choose layers or a --grep.
#
# The whole suite (no arguments) also proves the cold path a new machine takes: bootstrap
# from nothing (scripts/check-fresh-bootstrap.sh) and the images built without any cached
# layer of ours, so a step that only works when cached fails here, not on a user's machine.
# Each phase prints its time.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/node-env.sh
source "$(dirname "$0")/lib/node-env.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"
# shellcheck source=lib/base-images.sh
source "$(dirname "$0")/lib/base-images.sh"
# shellcheck source=lib/ferretdb.sh
source "$(dirname "$0")/lib/ferretdb.sh"
# shellcheck source=lib/scanners.sh
source "$(dirname "$0")/lib/scanners.sh"
# shellcheck source=lib/release-tools.sh
source "$(dirname "$0")/lib/release-tools.sh"
# shellcheck source=lib/k8s.sh
source "$(dirname "$0")/lib/k8s.sh"

full_suite=1
[ $# -gt 0 ] && full_suite=0
cd "$NONSTOP_ROOT"

phase bootstrap bash scripts/bootstrap.sh --test
if [ "$full_suite" = 1 ]; then
  phase "fresh-machine bootstrap" bash scripts/check-fresh-bootstrap.sh
fi
phase "node and npm ci" eval 'use_pinned_node && ensure_node_modules'
phase "test tools (FerretDB, scanners, release tools)" eval 'ensure_ferretdb_binary && ensure_scanners && ensure_release_test_tools'
export FERRETDB_BINARY="$NONSTOP_FERRETDB_BIN"
# The chart's e2e test runs on a real Kubernetes compiled from the Go module proxy: about
# 20 minutes on a cold machine (kube, helm, kube-router), skipped once cached (scripts/lib/k8s.sh).
phase "test Kubernetes (kube, helm, pause image)" eval 'ensure_k8s_host_packages && ensure_k8s_binaries'

phase "type-check and compile" npx tsc -p tsconfig.json
phase lint bash scripts/lint.sh

# The suite's harness builds through scripts/build-images.sh too; after this phase its
# build is all cache hits.
if [ "$full_suite" = 1 ]; then
  phase "images, no layer cache" bash scripts/build-images.sh --tag test --probe --monitoring --no-cache >/dev/null
fi

log "running tests"
exec node dist/test/run.js "$@"
