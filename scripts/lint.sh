#!/usr/bin/env bash
# The lint step of `npm test` (after the TypeScript compile): eslint, import cycles, no
# early-exit reader in a pipe (Dockerfiles and scripts), shellcheck on every shell script.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
cd "$NONSTOP_ROOT"

npx eslint --max-warnings=0 .
npx madge --circular --extensions ts services >/dev/null 2>&1 || die "import cycle in services/ (npx madge --circular --extensions ts services)"

mapfile -t shell_scripts < <(git ls-files -- 'scripts/*.sh' 'services/*.sh' '.ci/run')
mapfile -t dockerfiles < <(git ls-files -- 'Dockerfile*' '*.Dockerfile' '**/Dockerfile*')
if [ "${#shell_scripts[@]}" -eq 0 ] || [ "${#dockerfiles[@]}" -eq 0 ]; then die "no scripts or Dockerfiles found to lint"; fi
node dist/tools/lint/check-pipes.js "${dockerfiles[@]}" "${shell_scripts[@]}"
command -v shellcheck >/dev/null || die "shellcheck is missing (scripts/bootstrap.sh --test installs it)"
shellcheck "${shell_scripts[@]}"
log "shellcheck: ${#shell_scripts[@]} scripts clean"
