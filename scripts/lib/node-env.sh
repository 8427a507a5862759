# shellcheck shell=bash
# Puts the pinned Node.js first on PATH and installs the project's npm dependencies when
# the lockfile changed since the last install. Sourced (after common.sh).

use_pinned_node() {
  export PATH="$NONSTOP_NODE_HOME/bin:$PATH"
  # Native addons build against the pinned Node's headers, never downloaded ones.
  export npm_config_nodedir="$NONSTOP_NODE_HOME"
  export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  [ "$(node --version)" = "v$NODE_VERSION" ] || die "expected Node v$NODE_VERSION on PATH, got $(node --version)"
}

ensure_node_modules() {
  local stamp="$NONSTOP_ROOT/node_modules/.nonstop-lock-sha256" want
  want="$( (cat "$NONSTOP_ROOT/package-lock.json"; echo "$NODE_VERSION") | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "npm ci (Node $NODE_VERSION)"
  (cd "$NONSTOP_ROOT" && npm ci --loglevel=error 2>&1 | grep -v 'Unknown user config "nodedir"' >&2) || die "npm ci failed"
  echo "$want" >"$stamp"
}
