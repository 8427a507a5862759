# Building the three images. Sourced.

# The core variant: MongoDB where its packages can be fetched, FerretDB otherwise.
# An explicit NONSTOP_CORE_TARGET (environment or .env) always wins.
core_target() {
  if [ -n "${NONSTOP_CORE_TARGET:-}" ]; then echo "$NONSTOP_CORE_TARGET"; return; fi
  local from_env
  from_env=$(grep -s '^NONSTOP_CORE_TARGET=' "$NONSTOP_ROOT/.env" | tail -n1 | cut -d= -f2-)
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
  grep -qs '^NONSTOP_CORE_TARGET=' "$envfile" && return 0
  echo "NONSTOP_CORE_TARGET=$target" >>"$envfile"
  log "core variant: $target (recorded in .env)"
}

# docker build with the machine's CA bundle as an optional BuildKit secret: behind a
# TLS-intercepting proxy npm and Go need it; it never lands in a layer.
build_image() {
  local dockerfile="$1" tag="$2"; shift 2
  local secret=()
  [ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
  local revision
  revision=$(git -C "$NONSTOP_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  log "building $tag"
  docker build -q -f "$NONSTOP_ROOT/$dockerfile" "${secret[@]}" --build-arg "REVISION=$revision" -t "$tag" "$@" "$NONSTOP_ROOT" >/dev/null \
    || die "building $tag failed (rerun: DOCKER_BUILDKIT=1 docker build -f $dockerfile $* .)"
}

build_all_images() {
  local tag="${NONSTOP_TAG:-dev}" target
  target=$(core_target)
  remember_core_target "$target"
  build_image Dockerfile.gateway "nonstop/gateway:$tag"
  build_image Dockerfile.broker "nonstop/broker:$tag"
  build_image Dockerfile.core "nonstop/$target:$tag" --target "$target"
}
