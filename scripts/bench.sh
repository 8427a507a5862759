#!/usr/bin/env bash
# `npm run bench [-- section ...]`: bootstraps, builds, and runs bench/ (see BENCHMARKS.md).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/node-env.sh
source "$(dirname "$0")/lib/node-env.sh"
bash "$NONSTOP_ROOT/scripts/bootstrap.sh" --test
use_pinned_node
ensure_node_modules
cd "$NONSTOP_ROOT"
npx tsc -p tsconfig.json
exec node dist/bench/run.js "$@"
