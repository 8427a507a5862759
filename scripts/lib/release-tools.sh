# shellcheck shell=bash
# The tools of the release flow (scripts/release.sh, scripts/verify-release.sh) and of its
# test, from the package registries, pinned and cached between runs like the scanners.
#   cosign (sigstore)  signs each pushed digest and verifies it; the signer fleets and
#                      admission controllers (Kyverno, policy-controller) already check
#   oras               attaches the SBOM and the provenance statement to an image as OCI
#                      referrers, and discovers and fetches them
#   docker-registry    Debian's distribution 2.8: the registry the test pushes to
#   jq                 builds and reads the JSON documents (manifest, provenance)
# Sourced, after common.sh (and base-images.sh, for the host Go toolchain).

NONSTOP_RELEASE_TOOLS="$NONSTOP_CACHE/release-tools"
# cosign v2: key-based signing works without any network service (keyless needs Fulcio
# and Rekor) and it writes signatures in the tag layout (sha256-<digest>.sig) every
# verifier reads; the workflow installs the same version through cosign-installer.
COSIGN_VERSION="${COSIGN_VERSION:-v2.6.5}"
ORAS_VERSION="${ORAS_VERSION:-v1.3.6}"
COSIGN_BIN="$NONSTOP_RELEASE_TOOLS/cosign-$COSIGN_VERSION"
ORAS_BIN="$NONSTOP_RELEASE_TOOLS/oras-$ORAS_VERSION"

# `go install module/cmd@version` into the cache under a versioned name, once.
go_install_cached() {
  local module="$1" version="$2" target="$3" name gobin
  [ -x "$target" ] && return 0
  ensure_host_go
  name=$(basename "$module")
  mkdir -p "$NONSTOP_RELEASE_TOOLS"
  gobin=$(mktemp -d)
  log "building $name $version from the Go module proxy (once)"
  (cd /tmp && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gobin" "$NONSTOP_GO/bin/go" install -trimpath -ldflags='-s -w' "$module@$version") \
    >"$NONSTOP_RELEASE_TOOLS/$name-build.log" 2>&1 || die "building $name failed; see $NONSTOP_RELEASE_TOOLS/$name-build.log"
  mv "$gobin/$name" "$target"
  rm -rf "$gobin"
}

ensure_cosign() { go_install_cached github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" "$COSIGN_BIN"; }
ensure_oras() { go_install_cached oras.land/oras/cmd/oras "$ORAS_VERSION" "$ORAS_BIN"; }

# What scripts/release.sh needs on the machine that releases.
ensure_release_tools() {
  apt_install jq
  ensure_cosign
  ensure_oras
  export NONSTOP_COSIGN="$COSIGN_BIN" NONSTOP_ORAS="$ORAS_BIN"
}

# The release test also runs a registry. Debian's package installs a service unit; where
# systemd runs, that service listens on :5000 — the test never uses it, it starts its own
# registry on a loopback port with a configuration of its own.
ensure_release_test_tools() {
  ensure_release_tools
  apt_install docker-registry
  export NONSTOP_REGISTRY_BIN=/usr/bin/docker-registry
}
