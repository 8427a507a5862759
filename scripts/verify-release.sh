#!/usr/bin/env bash
# Verifies a release before a host deploys it: every image digest in the release manifest
# is in the registry and signed by the release's signer, and (for a release made by
# scripts/release.sh) its SBOM and provenance statement are attached to that very digest as
# OCI referrers, signed too, the provenance naming the digest as its subject and the SBOM
# describing it. The users' workflow runs it on what it has just pushed.
#
#   verify-release.sh MANIFEST.json --key PUBLIC_KEY
#   verify-release.sh MANIFEST.json --certificate-identity ID --certificate-oidc-issuer URL
#
# The first form is for a release signed with a key (cosign.pub beside the manifest); the
# second for one signed keyless in CI (the workflow file's identity, see docs/deploying.md).
# Exit status: 0 every check passed; 2 usage or a tool failed to run; 3 an image digest
# could not be fetched (not in the registry, or no registry answered); 4 a signature is
# missing or is not the release signer's; 5 an SBOM or provenance statement is missing,
# unsigned or names another image.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/release.sh
source "$(dirname "$0")/lib/release.sh"

usage() { log "usage: $0 MANIFEST.json (--key PUBLIC_KEY | --certificate-identity ID --certificate-oidc-issuer URL)"; exit 2; }
refuse() { local status="$1"; shift; log "refused: $*"; exit "$status"; }

[ $# -ge 1 ] || usage
manifest="$1"; shift
key="" identity="" issuer=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --key) key="$2" ;;
    --certificate-identity) identity="$2" ;;
    --certificate-oidc-issuer) issuer="$2" ;;
    *) usage ;;
  esac
  shift 2
done
[ -f "$manifest" ] || { log "no such manifest: $manifest"; exit 2; }

# Tools: the ones scripts/test.sh and scripts/release.sh export, else those on PATH.
cosign="${NONSTOP_COSIGN:-$(command -v cosign || true)}"
oras="${NONSTOP_ORAS:-$(command -v oras || true)}"
if [ ! -x "$cosign" ] || [ ! -x "$oras" ] || ! command -v jq >/dev/null; then
  log "needs cosign, oras and jq (scripts/lib/release-tools.sh installs them)"; exit 2
fi

jq -e '.schema == "nonstop-release/v1"' "$manifest" >/dev/null || { log "$manifest is not a nonstop-release/v1 manifest"; exit 2; }
version=$(jq -r .version "$manifest")
mode=$(jq -r .signing.mode "$manifest")
tlog=$(jq -r .signing.transparencyLog "$manifest")
attestations=$(jq -r .attestations "$manifest")

signer=()
case "$mode" in
  key)
    [ -n "$key" ] || { log "this release was signed with a key: pass --key PUBLIC_KEY"; exit 2; }
    signer=(--key "$key")
    # Signed without the public transparency log (an offline or private release): there is
    # no log entry to demand, only the signature.
    [ "$tlog" = true ] || signer+=(--insecure-ignore-tlog=true) ;;
  keyless)
    if [ -z "$identity" ] || [ -z "$issuer" ]; then log "this release was signed keyless: pass --certificate-identity and --certificate-oidc-issuer"; exit 2; fi
    signer=(--certificate-identity "$identity" --certificate-oidc-issuer "$issuer") ;;
  *) log "unknown signing mode '$mode' in $manifest"; exit 2 ;;
esac
# Each signature carries the version it was made for, so a genuinely signed image of another
# release cannot be passed off as this one.
signer+=(-a "version=$version")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A signature check that fails for lack of a signature, not for want of a registry: the
# digest is fetched first (status 3 if it is not there), then cosign decides (status 4).
verify_signed() {
  local what="$1" ref="$2" transport
  transport=$(oras_transport_args "$ref")
  # shellcheck disable=SC2086 # transport is empty or one flag
  "$oras" manifest fetch $transport --descriptor "$ref" >/dev/null 2>"$work/fetch.err" \
    || refuse 3 "$what: $ref could not be fetched ($(tail -n1 "$work/fetch.err"))"
  "$cosign" verify "${signer[@]}" "$ref" >/dev/null 2>"$work/verify.err" \
    || refuse 4 "$what: $ref carries no signature of the release signer ($(tail -n1 "$work/verify.err"))"
}

# Fetches one referrer's single file into a directory of its own and prints its path.
pull_artifact() {
  local ref="$1" dir="$2" transport files
  transport=$(oras_transport_args "$ref")
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  "$oras" pull $transport --output "$dir" "$ref" >/dev/null 2>"$work/pull.err" || refuse 5 "$ref could not be fetched ($(tail -n1 "$work/pull.err"))"
  files=("$dir"/*)
  if [ "${#files[@]}" != 1 ] || [ ! -f "${files[0]}" ]; then refuse 5 "$ref holds ${#files[@]} files, expected one"; fi
  echo "${files[0]}"
}

for role in "${RELEASE_ROLES[@]}"; do
  ref=$(jq -r --arg r "$role" '.images[$r].reference // empty' "$manifest")
  repo="${ref%@*}" digest="${ref#*@}"
  if [ -z "$ref" ] || ! is_digest "$digest"; then log "$manifest names no digest for $role"; exit 2; fi
  verify_signed "$role image" "$ref"

  if [ "$attestations" = referrers ]; then
    transport=$(oras_transport_args "$ref")
    # shellcheck disable=SC2086
    "$oras" discover $transport --format json "$ref" >"$work/referrers.json" 2>"$work/discover.err" \
      || refuse 5 "$role: referrers of $ref could not be listed ($(tail -n1 "$work/discover.err"))"
    for kind in sbom provenance; do
      want=$(jq -r --arg r "$role" --arg k "$kind" '.images[$r][$k] // empty' "$manifest")
      is_digest "$want" || refuse 5 "$role: the manifest names no $kind"
      type=application/vnd.cyclonedx+json
      [ "$kind" = provenance ] && type=application/vnd.in-toto+json
      jq -e --arg d "$want" --arg t "$type" '[.referrers[]? | select(.digest == $d and .artifactType == $t)] | length == 1' "$work/referrers.json" >/dev/null \
        || refuse 5 "$role: $kind $want ($type) is not a referrer of $ref"
      verify_signed "$role $kind" "$repo@$want"
      file=$(pull_artifact "$repo@$want" "$work/$role-$kind")
      if [ "$kind" = sbom ]; then
        jq -e --arg ref "$ref" '.bomFormat == "CycloneDX" and .metadata.component.name == $ref and (.components | length > 0)' "$file" >/dev/null \
          || refuse 5 "$role: the SBOM is not a CycloneDX document describing $ref"
      else
        jq -e --arg repo "$repo" --arg hex "${digest#sha256:}" '._type == "https://in-toto.io/Statement/v1"
            and .predicateType == "https://slsa.dev/provenance/v1"
            and ([.subject[] | select(.name == $repo and .digest.sha256 == $hex)] | length == 1)' "$file" >/dev/null \
          || refuse 5 "$role: the provenance statement does not name $ref as its subject"
      fi
    done
    log "verified $role: $ref (signature, signed SBOM and provenance)"
  else
    # BuildKit puts SBOM and provenance inside the image index; signing the index digest
    # covers them. Read them with: docker buildx imagetools inspect REF --format '{{json .Provenance}}'
    log "verified $role: $ref (signature; SBOM and provenance are inside the signed image index)"
  fi
done
log "release $version verified"
