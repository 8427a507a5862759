#!/usr/bin/env bash
# Builds the bench-only images through the project's one build function (build secrets,
# NONSTOP_BUILD_NO_CACHE) and prints "role=image" lines, as scripts/build-images.sh does.
#   bench/images/build.sh TAG
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "$0")/../../scripts/lib/common.sh"
# shellcheck source=../../scripts/lib/images.sh
source "$NONSTOP_ROOT/scripts/lib/images.sh"
[ $# -eq 1 ] || die "usage: bench/images/build.sh TAG"
build_image bench/images/Dockerfile.tunnel "nonstop/bench-tunnel:$1"
printf 'tunnel=nonstop/bench-tunnel:%s\n' "$1"
