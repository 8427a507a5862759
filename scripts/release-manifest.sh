#!/usr/bin/env bash
# Writes a release manifest — which image, by digest, each role of a release is — and the
# compose env file that deploys exactly those digests. scripts/release.sh calls it after a
# local release; the users' workflow (.github/workflows/images.yml) calls it after pushing
# and signing in CI, so both produce the same two files.
#
#   release-manifest.sh --out DIR --version V --revision SHA --source URL \
#     --attestations referrers|in-image-index --signing key|keyless [--tlog true|false] \
#     gateway=REPO@DIGEST broker=REPO@DIGEST core=REPO@DIGEST \
#     [ROLE.sbom=DIGEST ROLE.provenance=DIGEST ...]
#
# REPO is PREFIX/gateway, PREFIX/broker and PREFIX/<core variant> (core or core-ferretdb),
# as compose.yaml names them. Writes DIR/V.json and DIR/V.env.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/release.sh
source "$(dirname "$0")/lib/release.sh"

out="" version="" revision="" source_url="" attestations="" signing="" tlog=false
declare -A ref=() sbom=() provenance=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out | --version | --revision | --source | --attestations | --signing | --tlog)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --out) out="$2" ;;
        --version) version=$(release_version "$2") ;;
        --revision) revision="$2" ;;
        --source) source_url="$2" ;;
        --attestations) attestations="$2" ;;
        --signing) signing="$2" ;;
        --tlog) tlog="$2" ;;
      esac
      shift 2 ;;
    *.sbom=* | *.provenance=*)
      role="${1%%.*}" rest="${1#*.}"
      is_digest "${rest#*=}" || die "$1: not a sha256 digest"
      if [[ "$rest" == sbom=* ]]; then sbom[$role]="${rest#*=}"; else provenance[$role]="${rest#*=}"; fi
      shift ;;
    *=*@sha256:*)
      role="${1%%=*}"
      ref[$role]="${1#*=}"
      is_digest "${ref[$role]#*@}" || die "$1: not REPO@sha256:<64 hex>"
      shift ;;
    *) die "unexpected argument $1 (see the header of $0)" ;;
  esac
done
if [ -z "$out" ] || [ -z "$version" ] || [ -z "$revision" ] || [ -z "$source_url" ]; then die "--out, --version, --revision and --source are required"; fi
case "$attestations" in referrers | in-image-index) ;; *) die "--attestations must be referrers or in-image-index" ;; esac
case "$signing" in key | keyless) ;; *) die "--signing must be key or keyless" ;; esac
case "$tlog" in true | false) ;; *) die "--tlog must be true or false" ;; esac

prefix="${ref[gateway]:-}"
prefix="${prefix%/gateway@*}"
if [ -z "$prefix" ] || [ "${ref[gateway]}" = "$prefix" ]; then die "gateway=PREFIX/gateway@DIGEST is required"; fi
core_repo="${ref[core]:-}"
core_repo="${core_repo%@*}"
core_target="${core_repo##*/}"
broker_ref="${ref[broker]:-}"
[ "${broker_ref%@*}" = "$prefix/broker" ] || die "broker must be $prefix/broker@DIGEST (one prefix for all three)"
[ "$core_repo" = "$prefix/core" ] || [ "$core_repo" = "$prefix/core-ferretdb" ] || die "core must be $prefix/core@DIGEST or $prefix/core-ferretdb@DIGEST"
if [ "$attestations" = referrers ]; then
  for role in "${RELEASE_ROLES[@]}"; do
    if [ -z "${sbom[$role]:-}" ] || [ -z "${provenance[$role]:-}" ]; then die "$role.sbom and $role.provenance are required with --attestations referrers"; fi
  done
fi

images='{}'
for role in "${RELEASE_ROLES[@]}"; do
  images=$(jq --arg role "$role" --arg ref "${ref[$role]}" --arg sbom "${sbom[$role]:-}" --arg prov "${provenance[$role]:-}" '
    .[$role] = ({repository: ($ref | split("@")[0]), digest: ($ref | split("@")[1]), reference: $ref}
      + (if $sbom == "" then {} else {sbom: $sbom, provenance: $prov} end))' <<<"$images")
done

mkdir -p "$out"
jq -n --arg version "$version" --arg revision "$revision" --arg source "$source_url" \
  --arg attestations "$attestations" --arg signing "$signing" --argjson tlog "$tlog" \
  --arg prefix "$prefix" --arg coreTarget "$core_target" --argjson images "$images" \
  --arg tags "$(release_tags "$version")" '{
    schema: "nonstop-release/v1",
    version: $version,
    tags: ($tags | split(" ")),
    source: {repository: $source, revision: $revision},
    imagePrefix: $prefix,
    coreTarget: $coreTarget,
    signing: {mode: $signing, transparencyLog: $tlog},
    attestations: $attestations,
    images: $images
  }' >"$out/$version.json.tmp"
mv "$out/$version.json.tmp" "$out/$version.json"

# compose.yaml names each image PREFIX/NAME:TAG followed by its digest variable; with the
# digest set, Docker pulls and runs that content and the tag is only a label for people.
# The per-host files of deploy/compose/ read the same variables, and refuse to start without
# the digest.
{
  echo "# Nonstop $version, written by scripts/release-manifest.sh from $version.json."
  echo "# Verify first:  scripts/verify-release.sh $version.json (with the release's key or CI identity; docs/deploying.md, \"Releases\")"
  echo "# Then deploy:   docker compose --env-file $version.env pull && docker compose --env-file $version.env up -d --no-build"
  echo "# Or one tier per host (deploy/compose/, with that host's settings added): docker compose -f deploy/compose/<tier>.yaml --env-file $version.env up -d"
  echo "NONSTOP_IMAGE_PREFIX=$prefix"
  echo "NONSTOP_TAG=$version"
  echo "NONSTOP_CORE_TARGET=$core_target"
  for role in "${RELEASE_ROLES[@]}"; do
    echo "NONSTOP_${role^^}_DIGEST=@${ref[$role]#*@}"
  done
} >"$out/$version.env.tmp"
mv "$out/$version.env.tmp" "$out/$version.env"
log "release manifest: $out/$version.json, compose env: $out/$version.env"
