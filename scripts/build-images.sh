#!/usr/bin/env bash
# Builds nonstop/gateway, nonstop/broker and nonstop/<core variant> (tag $NONSTOP_TAG, dev).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/images.sh"
build_all_images
