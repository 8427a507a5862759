# shellcheck shell=bash disable=SC2034 # RELEASE_ROLES is read by the scripts that source it
# Shared by scripts/release.sh, scripts/release-manifest.sh and scripts/verify-release.sh.
# Sourced, after common.sh.

# The three roles of a release, in the order the manifest lists them.
RELEASE_ROLES=(gateway broker core)

# MAJOR.MINOR.PATCH with an optional pre-release (semver 2.0; build metadata has no place in
# an image tag, whose alphabet lacks "+"). A leading "v" (a git tag) is dropped.
release_version() {
  local v="${1#v}"
  [[ "$v" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] \
    || die "version '$1' is not MAJOR.MINOR.PATCH[-PRERELEASE]"
  echo "$v"
}

# The tags a version is pushed under: 1.2.3, 1.2 and 1; a pre-release (1.2.3-rc.1) only
# under its own name, so it never moves a tag that production hosts follow. The same
# rule as docker/metadata-action's semver patterns in the users' workflow.
release_tags() {
  local v="$1"
  if [[ "$v" == *-* ]]; then echo "$v"; return; fi
  echo "$v ${v%.*} ${v%%.*}"
}

# oras speaks HTTPS unless told otherwise. A registry on loopback (the test's, a local
# mirror) speaks plain HTTP: the rule docker and cosign (go-containerregistry) apply on
# their own, for loopback only.
oras_transport_args() {
  local host="${1%%/*}"
  case "$host" in
    localhost | localhost:* | 127.* | '[::1]' | '[::1]:'*) echo --plain-http ;;
  esac
}

is_digest() { [[ "$1" =~ ^sha256:[0-9a-f]{64}$ ]]; }
