#!/usr/bin/env bash
# `npm run bench [-- section ...]`: bootstraps, builds, and runs bench/ (see BENCHMARKS.md).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/node-env.sh
source "$(dirname "$0")/lib/node-env.sh"
# shellcheck source=lib/ferretdb.sh
source "$(dirname "$0")/lib/ferretdb.sh"
bash "$NONSTOP_ROOT/scripts/bootstrap.sh" --test
use_pinned_node
ensure_node_modules
# The at-rest section runs FerretDB on the host, as the integration tests do (built once, then cached).
ensure_ferretdb_binary
export FERRETDB_BINARY="$NONSTOP_FERRETDB_BIN"
cd "$NONSTOP_ROOT"
npx tsc -p tsconfig.json
exec node dist/bench/run.js "$@"
