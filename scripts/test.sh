#!/usr/bin/env bash
# `npm test`: bootstraps this machine (Docker engine, base images, test peers), installs
# dependencies, type-checks, lints, builds the images and runs the whole suite — unit,
# integration, security and end-to-end — printing mocha's report and a closing line
# "tests: N passed, N failed, N skipped". Extra arguments choose layers or a --grep.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/node-env.sh"
source "$(dirname "$0")/lib/ferretdb.sh"
source "$(dirname "$0")/lib/scanners.sh"

bash "$NONSTOP_ROOT/scripts/bootstrap.sh" --test
use_pinned_node
ensure_node_modules
ensure_ferretdb_binary
export FERRETDB_BINARY="$NONSTOP_FERRETDB_BIN"
ensure_scanners

cd "$NONSTOP_ROOT"
log "type-check and compile"
npx tsc -p tsconfig.json
log "lint"
npx eslint --max-warnings=0 .
npx madge --circular --extensions ts services >/dev/null || die "import cycle in services/ (npx madge --circular --extensions ts services)"

log "running tests"
exec node dist/test/run.js "$@"
