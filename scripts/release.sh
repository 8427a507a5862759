#!/usr/bin/env bash
# `npm run release -- <image prefix> <version>`: releases the three images to a registry.
#
#   1. builds them through scripts/build-images.sh (the demo's and the tests' build path),
#      labelled with the version, the full git revision and the source repository;
#   2. pushes each as PREFIX/<name>:<version> and from then on addresses it only by the
#      digest the registry answered; tags that digest <major>.<minor> and <major> too
#      (not for a pre-release such as 1.2.3-rc.1);
#   3. attaches a CycloneDX SBOM (trivy, read from the pushed image: its Debian packages
#      and the npm packages it ships) and an SLSA v1 provenance statement to each digest as
#      OCI referrers (oras);
#   4. signs every digest — image, SBOM, provenance — with cosign, each signature carrying
#      the version;
#   5. writes the release manifest (role -> image@digest) and the compose env file that
#      deploys those digests (scripts/release-manifest.sh), then checks the result the way a
#      host will (scripts/verify-release.sh).
#
# PREFIX is a registry and path, e.g. ghcr.io/acme/nonstop or 127.0.0.1:5000/nonstop; log in
# first (docker login) for a registry that needs it — oras, cosign and trivy read the same
# credentials. The local images are tagged nonstop/<name>:<version> ($NONSTOP_TAG overrides).
#
# Signing: COSIGN_KEY names a cosign private key (a file from `cosign generate-key-pair`, or
# any key reference cosign takes) and COSIGN_PASSWORD its password; signatures then stay out
# of the public transparency log unless NONSTOP_RELEASE_TLOG=true. Without COSIGN_KEY cosign
# signs keyless (Sigstore: an OIDC login, recorded in the public log).
# Output: $NONSTOP_RELEASE_DIR (default release/) gets <version>.json and <version>.env.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"
# shellcheck source=lib/base-images.sh
source "$(dirname "$0")/lib/base-images.sh"
# shellcheck source=lib/scanners.sh
source "$(dirname "$0")/lib/scanners.sh"
# shellcheck source=lib/release-tools.sh
source "$(dirname "$0")/lib/release-tools.sh"
# shellcheck source=lib/release.sh
source "$(dirname "$0")/lib/release.sh"

[ $# -eq 2 ] || die "usage: npm run release -- <image prefix, e.g. ghcr.io/acme/nonstop> <version, e.g. 1.2.3>"
prefix="${1%/}"
# Lower-case path components, an optional registry host[:port] first: what an image name takes.
[[ "$prefix" =~ ^([A-Za-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] \
  || die "'$1' is not an image prefix such as ghcr.io/acme/nonstop"
version=$(release_version "$2")
read -r -a tags <<<"$(release_tags "$version")"
out_dir="${NONSTOP_RELEASE_DIR:-$NONSTOP_ROOT/release}"
build_tag="${NONSTOP_TAG:-$version}"
cd "$NONSTOP_ROOT"

revision=$(git rev-parse HEAD 2>/dev/null) || die "release.sh runs in a git checkout: the revision goes into labels and provenance"
worktree_clean=true
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  worktree_clean=false
  log "warning: uncommitted changes are part of this build; the provenance records it (worktreeClean: false)"
fi

# The repository the images say they come from: origin's URL (without any credentials in
# it), else the default the Dockerfiles carry.
source_url=$(git remote get-url origin 2>/dev/null || true)
source_url=$(sed -E -e 's#^git@([^:]+):#https://\1/#' -e 's#^(https://)[^/@]+@#\1#' -e 's#\.git$##' <<<"$source_url")
[[ "$source_url" == https://* ]] || source_url=$(sed -n 's/^ARG SOURCE_URL=//p' Dockerfile.gateway)
[ -n "$source_url" ] || die "no source URL: set a git remote 'origin' or ARG SOURCE_URL in Dockerfile.gateway"

sign_mode=key tlog=false
if [ -z "${COSIGN_KEY:-}" ]; then
  sign_mode=keyless tlog=true
  log "COSIGN_KEY is not set: signing keyless (Sigstore OIDC login)"
elif [ "${NONSTOP_RELEASE_TLOG:-false}" = true ]; then
  tlog=true
fi

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
phase "release tools (cosign, oras, trivy)" eval 'ensure_release_tools && ensure_trivy'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export NONSTOP_IMAGE_VERSION="$version" NONSTOP_IMAGE_REVISION="$revision" NONSTOP_IMAGE_SOURCE="$source_url"
build_images() { bash scripts/build-images.sh --tag "$build_tag" >"$work/built"; }
phase "build images ($build_tag)" build_images
declare -A built=()
while IFS='=' read -r role image; do built[$role]="$image"; done <"$work/built"
for role in "${RELEASE_ROLES[@]}"; do [ -n "${built[$role]:-}" ] || die "build-images.sh reported no $role image"; done

# What each image was built from, for the provenance: the base images by content (a repo
# digest where the image was pulled, else the local stand-in's image id, marked as such) and
# the npm lockfile.
base_image_json() {
  local image="$1" id repo_digest
  id=$(docker image inspect --format '{{.Id}}' "$image") || die "base image $image is missing"
  repo_digest=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | sed -n '1s/.*@//p')
  if [ -n "$repo_digest" ]; then
    jq -n --arg uri "pkg:docker/$image" --arg d "${repo_digest#sha256:}" '{uri: $uri, digest: {sha256: $d}}'
  else
    jq -n --arg uri "pkg:docker/$image" --arg d "${id#sha256:}" \
      '{uri: $uri, digest: {sha256: $d}, annotations: {localStandIn: true, note: "built by scripts/bootstrap.sh because no registry answered; the digest is the image id"}}'
  fi
}
lockfile_sha=$(sha256sum package-lock.json | cut -d' ' -f1)
deps_common=$(jq -n --arg src "git+$source_url" --arg rev "$revision" --argjson clean "$worktree_clean" --arg lock "$lockfile_sha" \
  --argjson node "$(base_image_json "$BASE_NODE_IMAGE")" --argjson debian "$(base_image_json "$BASE_DEBIAN_IMAGE")" \
  '[{uri: $src, digest: {gitCommit: $rev}, annotations: {worktreeClean: $clean}}, $node, $debian,
    {uri: "file:package-lock.json", digest: {sha256: $lock}}]')
deps_go=$(base_image_json "$BASE_GO_IMAGE")
engine=$(docker version --format '{{.Server.Version}}')

push_image() {
  docker push "$1" >"$2" 2>&1 || { tail -n 20 "$2" >&2; return 1; }
}

manifest_args=()
for role in "${RELEASE_ROLES[@]}"; do
  local_image="${built[$role]}"
  name="${local_image#nonstop/}"
  name="${name%:*}"
  repo="$prefix/$name"
  case "$name" in
    gateway) dockerfile=Dockerfile.gateway target="" ;;
    broker) dockerfile=Dockerfile.broker target="" ;;
    *) dockerfile=Dockerfile.core target="$name" ;;
  esac
  transport=$(oras_transport_args "$repo")

  docker tag "$local_image" "$repo:$version"
  phase "push $repo:$version" push_image "$repo:$version" "$work/push-$name.log"
  # From here on the image is its digest. docker's own record of what it pushed must agree
  # with what the registry now serves under the tag, or someone else pushed in between.
  # shellcheck disable=SC2086 # transport is empty or one flag
  digest=$("$NONSTOP_ORAS" resolve $transport "$repo:$version")
  is_digest "$digest" || die "registry answered '$digest' for $repo:$version"
  docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$repo:$version" | grep -Fx "$repo@$digest" >/dev/null \
    || die "$repo:$version resolves to $digest, which is not what docker pushed"
  for tag in "${tags[@]:1}"; do
    # shellcheck disable=SC2086
    "$NONSTOP_ORAS" tag $transport "$repo@$digest" "$tag" >/dev/null
  done

  (cd "$work" && TRIVY_CACHE_DIR="${TRIVY_CACHE_DIR:-$NONSTOP_SCANNERS/trivy-cache}" TRIVY_DISABLE_VEX_NOTICE=true \
    "$TRIVY_BIN" image --image-src remote --skip-db-update --skip-check-update --quiet \
    --format cyclonedx --output "$name.cdx.json" "$repo@$digest") || die "trivy could not read $repo@$digest for its SBOM"

  deps="$deps_common"
  [ -n "$target" ] && deps=$(jq --argjson go "$deps_go" '. + [$go]' <<<"$deps")
  jq -n --arg repo "$repo" --arg hex "${digest#sha256:}" --arg source "$source_url" --arg rev "$revision" \
    --arg version "$version" --arg dockerfile "$dockerfile" --arg target "$target" --argjson deps "$deps" \
    --arg engine "$engine" --arg started "$started" --arg finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg invocation "$(cat /proc/sys/kernel/random/uuid)" '{
      _type: "https://in-toto.io/Statement/v1",
      subject: [{name: $repo, digest: {sha256: $hex}}],
      predicateType: "https://slsa.dev/provenance/v1",
      predicate: {
        buildDefinition: {
          buildType: ($source + "/blob/" + $rev + "/scripts/release.sh"),
          externalParameters: {source: ("git+" + $source + "@" + $rev), version: $version,
            dockerfile: $dockerfile, target: $target, platform: "linux/amd64"},
          internalParameters: {buildArgs: {VERSION: $version, REVISION: $rev, SOURCE_URL: $source}},
          resolvedDependencies: $deps
        },
        runDetails: {
          builder: {id: ($source + "/blob/" + $rev + "/scripts/release.sh"), version: {dockerEngine: $engine}},
          metadata: {invocationId: $invocation, startedOn: $started, finishedOn: $finished}
        }
      }
    }' >"$work/$name.provenance.json"

  # shellcheck disable=SC2086
  sbom_digest=$(cd "$work" && "$NONSTOP_ORAS" attach $transport --artifact-type application/vnd.cyclonedx+json \
    --format go-template='{{.digest}}' "$repo@$digest" "$name.cdx.json:application/vnd.cyclonedx+json")
  # shellcheck disable=SC2086
  provenance_digest=$(cd "$work" && "$NONSTOP_ORAS" attach $transport --artifact-type application/vnd.in-toto+json \
    --annotation "in-toto.io/predicate-type=https://slsa.dev/provenance/v1" \
    --format go-template='{{.digest}}' "$repo@$digest" "$name.provenance.json:application/vnd.in-toto+json")
  if ! is_digest "$sbom_digest" || ! is_digest "$provenance_digest"; then die "oras attach answered '$sbom_digest' / '$provenance_digest'"; fi

  sign_args=(--yes -a "version=$version" -a "revision=$revision")
  if [ "$sign_mode" = key ]; then sign_args+=(--key "$COSIGN_KEY" --tlog-upload="$tlog"); fi
  for d in "$digest" "$sbom_digest" "$provenance_digest"; do
    "$NONSTOP_COSIGN" sign "${sign_args[@]}" "$repo@$d" >"$work/sign.log" 2>&1 || { tail -n 20 "$work/sign.log" >&2; die "cosign could not sign $repo@$d"; }
  done
  log "released $role: $repo@$digest (tags ${tags[*]}; SBOM $sbom_digest, provenance $provenance_digest)"
  manifest_args+=("$role=$repo@$digest" "$role.sbom=$sbom_digest" "$role.provenance=$provenance_digest")
done

bash scripts/release-manifest.sh --out "$out_dir" --version "$version" --revision "$revision" --source "$source_url" \
  --attestations referrers --signing "$sign_mode" --tlog "$tlog" "${manifest_args[@]}"

# The release checks itself the way a fleet host will, before anyone deploys it.
if [ "$sign_mode" = key ]; then
  COSIGN_PASSWORD="${COSIGN_PASSWORD:-}" "$NONSTOP_COSIGN" public-key --key "$COSIGN_KEY" >"$work/release.pub"
  bash scripts/verify-release.sh "$out_dir/$version.json" --key "$work/release.pub"
else
  log "keyless release: verify it with scripts/verify-release.sh $out_dir/$version.json --certificate-identity <your identity> --certificate-oidc-issuer <its issuer>"
fi
log "release $version done: $out_dir/$version.json"
