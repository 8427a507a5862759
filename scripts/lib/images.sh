# shellcheck shell=bash
# Building images: the one code path the demo, the test suite and the benchmarks share
# (the TypeScript harness runs scripts/build-images.sh). Sourced, after common.sh.

# The core variant: MongoDB where its packages can be fetched, FerretDB otherwise.
# An explicit NONSTOP_CORE_TARGET (environment or .env) always wins.
core_target() {
  if [ -n "${NONSTOP_CORE_TARGET:-}" ]; then echo "$NONSTOP_CORE_TARGET"; return; fi
  local from_env=""
  if [ -f "$NONSTOP_ROOT/.env" ]; then
    from_env=$(sed -n 's/^NONSTOP_CORE_TARGET=//p' "$NONSTOP_ROOT/.env")
    from_env="${from_env##*$'\n'}"
  fi
  if [ -n "$from_env" ]; then echo "$from_env"; return; fi
  if timeout 8 curl -fsS -o /dev/null https://repo.mongodb.org/apt/debian/dists/bookworm/mongodb-org/8.0/Release 2>/dev/null; then
    echo core
  else
    echo core-ferretdb
  fi
}

# Records the choice in .env so plain `docker compose up` builds the same variant.
remember_core_target() {
  local target="$1" envfile="$NONSTOP_ROOT/.env"
  if [ -f "$envfile" ] && grep -s '^NONSTOP_CORE_TARGET=' "$envfile" >/dev/null; then return 0; fi
  echo "NONSTOP_CORE_TARGET=$target" >>"$envfile"
  log "core variant: $target (recorded in .env)"
}

# docker build with the machine's CA bundle as an optional BuildKit secret: behind a
# TLS-intercepting proxy npm and Go need it; it never lands in a layer. With
# NONSTOP_BUILD_NO_CACHE=1 no cached layer is reused (cache mounts — downloaded npm
# tarballs and Go modules — still are), so a step that only works when cached fails here.
build_image() {
  local dockerfile="$1" tag="$2"; shift 2
  local args=(-f "$NONSTOP_ROOT/$dockerfile" -t "$tag")
  [ -s /etc/ssl/certs/ca-certificates.crt ] && args+=(--secret "id=ca,src=/etc/ssl/certs/ca-certificates.crt")
  [ "${NONSTOP_BUILD_NO_CACHE:-0}" = 1 ] && args+=(--no-cache)
  # An engine whose bridge has no route out (the fresh-bootstrap check's, which must not
  # touch the machine's NAT rules) builds on the host's network.
  [ -n "${NONSTOP_BUILD_NETWORK:-}" ] && args+=(--network "$NONSTOP_BUILD_NETWORK")
  # A release (scripts/release.sh) labels its images with the version, the full revision
  # and the source repository; other builds keep the Dockerfiles' defaults and a short revision.
  [ -n "${NONSTOP_IMAGE_VERSION:-}" ] && args+=(--build-arg "VERSION=$NONSTOP_IMAGE_VERSION")
  [ -n "${NONSTOP_IMAGE_SOURCE:-}" ] && args+=(--build-arg "SOURCE_URL=$NONSTOP_IMAGE_SOURCE")
  local revision started logfile
  revision=${NONSTOP_IMAGE_REVISION:-$(git -C "$NONSTOP_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
  mkdir -p "$NONSTOP_CACHE/build-logs"
  logfile="$NONSTOP_CACHE/build-logs/$(echo "$tag" | tr '/:' '__').log"
  started=$(date +%s)
  log "building $tag${NONSTOP_BUILD_NO_CACHE:+ (no layer cache)}"
  if ! docker build --progress=plain "${args[@]}" --build-arg "REVISION=$revision" "$@" "$NONSTOP_ROOT" >"$logfile" 2>&1; then
    tail -n 40 "$logfile" >&2
    die "building $tag failed (full log: $logfile; rerun: DOCKER_BUILDKIT=1 docker build -f $dockerfile $* .)"
  fi
  log "built $tag in $(( $(date +%s) - started )) s"
}

# Builds nonstop/gateway, nonstop/broker, nonstop/<core variant> (and with --probe the
# test client image) tagged $1, and prints "role=image" lines on stdout for callers.
build_all_images() {
  local tag="$1" probe="$2" target
  target=$(core_target)
  remember_core_target "$target"
  build_image Dockerfile.gateway "nonstop/gateway:$tag"
  build_image Dockerfile.broker "nonstop/broker:$tag"
  build_image Dockerfile.core "nonstop/$target:$tag" --target "$target"
  printf 'gateway=nonstop/gateway:%s\nbroker=nonstop/broker:%s\ncore=nonstop/%s:%s\ncoreTarget=%s\n' "$tag" "$tag" "$target" "$tag" "$target"
  if [ "$probe" = 1 ]; then
    build_image test/support/stack/Dockerfile.probe "nonstop/probe:$tag"
    printf 'probe=nonstop/probe:%s\n' "$tag"
  fi
}

# The compose demo's Prometheus (profile `monitoring`) tagged $1; prints "prometheus=image".
build_monitoring_image() {
  local tag="$1"
  build_image deploy/monitoring/Dockerfile.prometheus "nonstop/prometheus:$tag"
  printf 'prometheus=nonstop/prometheus:%s\n' "$tag"
}
