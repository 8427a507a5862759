# shellcheck shell=bash
# FerretDB v1.24 for host-side integration tests, built once from the Go module proxy and
# cached. The module zip lacks the generated build/version/version.txt (without it the
# binary panics at start), so the source is copied, the file written, then built.
# Sourced.

FERRETDB_VERSION="${FERRETDB_VERSION:-v1.24.2}"
NONSTOP_FERRETDB_BIN="$NONSTOP_CACHE/ferretdb-$FERRETDB_VERSION"

ensure_ferretdb_binary() {
  [ -x "$NONSTOP_FERRETDB_BIN" ] && return 0
  ensure_host_go
  local go="$NONSTOP_GO/bin/go"
  log "building FerretDB $FERRETDB_VERSION from the Go module proxy (about a minute, once)"
  local dir src module_json
  module_json=$(cd /tmp && CGO_ENABLED=0 "$go" mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION") \
    || die "go mod download of FerretDB $FERRETDB_VERSION failed"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$module_json")
  [ -d "$dir" ] || die "go mod download of FerretDB $FERRETDB_VERSION failed"
  src=$(mktemp -d)
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  (cd "$src" && CGO_ENABLED=0 "$go" build -trimpath -ldflags='-s -w' -o "$NONSTOP_FERRETDB_BIN.tmp" ./cmd/ferretdb) \
    || die "building FerretDB failed"
  mv "$NONSTOP_FERRETDB_BIN.tmp" "$NONSTOP_FERRETDB_BIN"
  rm -rf "$src"
}
