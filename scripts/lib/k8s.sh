# shellcheck shell=bash
# The single-node Kubernetes the chart's tests run on (scripts/k8s-cluster.sh starts and
# stops it), built once from the Go module proxy and cached like the other test tools:
#   kube   upstream Kubernetes as one multicall binary (etcd, apiserver, controller-manager,
#          scheduler, kubelet, kube-proxy) from scripts/k8s/{go.mod,go.sum,kube/main.go}
#   helm   Helm 3 from its module
#   pause  the pod sandbox image (scripts/k8s/pause), written as an OCI archive for ctr
#   kube-router  its NetworkPolicy controller only: the policies enforced, per pod
# v1.34 because this kind of machine runs cgroup v1 (from 1.35 the kubelet refuses it) and
# Debian 12's containerd 1.6 is still a supported runtime for it. No registry is reachable,
# so nothing is pulled: k3s and kind need their own images or non-module tags.
# The cold compile takes about 23 minutes on two busy cores and fills the Go caches with
# about 10 GB; later builds of the same inputs are skipped (a stamp records them).
# Sourced, after common.sh and base-images.sh (for the host Go toolchain).

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
K8S_PAUSE_REF="docker.io/nonstop/k8s-pause:3.10"
NONSTOP_K8S="$NONSTOP_CACHE/k8s"
K8S_SRC="$NONSTOP_ROOT/scripts/k8s"
K8S_KUBE_BIN="$NONSTOP_K8S/kube-$K8S_VERSION"
K8S_HELM_BIN="$NONSTOP_K8S/helm-$HELM_VERSION"
K8S_PAUSE_TAR="$NONSTOP_K8S/pause.tar"

# A network step, retried a bounded number of times, each under a time limit: the module
# proxy sometimes stalls or answers 5xx, and a stalled download must not hang the suite.
k8s_fetch() {
  local attempt
  for attempt in 1 2 3; do
    timeout 900 "$@" && return 0
    log "attempt $attempt of: $* failed; retrying"
    sleep $((attempt * 5))
  done
  return 1
}

# What the built kube binary was made from; a different go.mod or main.go rebuilds. Not
# go.sum: it only records the checksums of the versions go.mod already selects.
k8s_kube_inputs() {
  echo "$K8S_VERSION"
  cat "$K8S_SRC/go.mod" "$K8S_SRC/kube/main.go"
}

k8s_stamp_ok() { # binary stamp-text
  [ -x "$1" ] && [ -f "$1.stamp" ] && [ "$(cat "$1.stamp")" = "$2" ]
}

ensure_k8s_kube() {
  local stamp go src ld started
  stamp=$(k8s_kube_inputs | sha256sum | cut -d' ' -f1)
  k8s_stamp_ok "$K8S_KUBE_BIN" "$stamp" && return 0
  ensure_host_go
  go="$NONSTOP_GO/bin/go"
  mkdir -p "$NONSTOP_K8S"
  src=$(mktemp -d)
  cp -r "$K8S_SRC/." "$src/"
  log "building Kubernetes $K8S_VERSION (kube multicall) from the Go module proxy (about 23 minutes cold, once)"
  # go.sum is committed; a missing one is made again (and should be committed).
  if [ ! -f "$src/go.sum" ]; then
    (cd "$src" && k8s_fetch "$go" mod tidy) >>"$NONSTOP_K8S/kube-build.log" 2>&1 \
      || die "go mod tidy of the kube build failed; see $NONSTOP_K8S/kube-build.log"
    cp "$src/go.sum" "$NONSTOP_K8S/go.sum.generated"
  fi
  (cd "$src" && k8s_fetch "$go" mod download) >>"$NONSTOP_K8S/kube-build.log" 2>&1 \
    || die "go mod download of Kubernetes $K8S_VERSION failed; see $NONSTOP_K8S/kube-build.log"
  # The version the components report (kubectl version, node status) is set at link time,
  # as upstream's hack/lib/version.sh does; "providerless" drops the cloud providers.
  ld="-s -w"
  local v="${K8S_VERSION#v}" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${v%%.*} -X $pkg.gitMinor=$(cut -d. -f2 <<<"$v")"
  done
  ld="$ld -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  started=$(date +%s)
  # Offline from here: everything was downloaded above.
  (cd "$src" && GOPROXY=off GOFLAGS=-mod=readonly CGO_ENABLED=1 \
    "$go" build -trimpath -tags providerless -ldflags "$ld" -o "$K8S_KUBE_BIN.tmp" ./kube) >>"$NONSTOP_K8S/kube-build.log" 2>&1 \
    || die "building kube failed; see $NONSTOP_K8S/kube-build.log"
  mv "$K8S_KUBE_BIN.tmp" "$K8S_KUBE_BIN"
  echo "$stamp" >"$K8S_KUBE_BIN.stamp"
  rm -rf "$src"
  log "kube $K8S_VERSION built in $(( $(date +%s) - started )) s"
}

# The link-time settings of Helm's Makefile: the Kubernetes version `helm template` and
# `helm lint` assume without a cluster (Helm's client-go minor, plus one), else 1.20, which
# a chart's kubeVersion refuses.
K8S_HELM_STAMP="$HELM_VERSION ldflags-2"

ensure_k8s_helm() {
  k8s_stamp_ok "$K8S_HELM_BIN" "$K8S_HELM_STAMP" && return 0
  ensure_host_go
  local go="$NONSTOP_GO/bin/go" module_json dir src
  mkdir -p "$NONSTOP_K8S"
  log "building Helm $HELM_VERSION from the Go module proxy (a few minutes, once)"
  module_json=$(cd /tmp && k8s_fetch "$go" mod download -json "helm.sh/helm/v3@$HELM_VERSION") \
    || die "go mod download of Helm $HELM_VERSION failed"
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$module_json")
  [ -d "$dir" ] || die "go mod download of Helm $HELM_VERSION gave no source directory"
  # Built inside its own module (its go.sum pins its dependencies); the module cache is
  # read-only, so from a writable copy.
  src=$(mktemp -d)
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && k8s_fetch "$go" mod download) >>"$NONSTOP_K8S/helm-build.log" 2>&1 \
    || die "go mod download of Helm's dependencies failed; see $NONSTOP_K8S/helm-build.log"
  local minor ld pkg
  minor=$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$src/go.mod")
  [ -n "$minor" ] || die "Helm $HELM_VERSION: no k8s.io/client-go version in its go.mod"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$((minor + 1))"
  done
  (cd "$src" && GOPROXY=off CGO_ENABLED=0 "$go" build -trimpath -ldflags "$ld" -o "$K8S_HELM_BIN.tmp" ./cmd/helm) \
    >>"$NONSTOP_K8S/helm-build.log" 2>&1 || die "building helm failed; see $NONSTOP_K8S/helm-build.log"
  mv "$K8S_HELM_BIN.tmp" "$K8S_HELM_BIN"
  echo "$K8S_HELM_STAMP" >"$K8S_HELM_BIN.stamp"
  rm -rf "$src"
}

# The pause image as a one-layer OCI archive `ctr images import` takes, written with tar and
# sha256sum (no Docker image, no registry).
ensure_k8s_pause_image() {
  local stamp
  stamp=$(sha256sum <"$K8S_SRC/pause/main.go" | cut -d' ' -f1)
  [ -f "$K8S_PAUSE_TAR" ] && [ "$(cat "$K8S_PAUSE_TAR.stamp" 2>/dev/null)" = "$stamp" ] && return 0
  ensure_host_go
  local work layer_sha layer_size cfg cfg_sha man man_sha
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
  (cd "$K8S_SRC/pause" && GOPROXY=off CGO_ENABLED=0 "$NONSTOP_GO/bin/go" build -trimpath -ldflags='-s -w' -o "$work/rootfs/pause" main.go) \
    || die "building the pause program failed"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
  layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/oci/blobs/sha256/$layer_sha"
  cfg='{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:'$layer_sha'"]}}'
  cfg_sha=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  printf '%s' "$cfg" >"$work/oci/blobs/sha256/$cfg_sha"
  man='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'$cfg_sha'","size":'${#cfg}'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'$layer_sha'","size":'$layer_size'}]}'
  man_sha=$(printf '%s' "$man" | sha256sum | cut -d' ' -f1)
  printf '%s' "$man" >"$work/oci/blobs/sha256/$man_sha"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man_sha" "${#man}" "$K8S_PAUSE_REF" "${K8S_PAUSE_REF##*:}" >"$work/oci/index.json"
  mkdir -p "$NONSTOP_K8S"
  tar --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$K8S_PAUSE_TAR.tmp" oci-layout index.json blobs
  mv "$K8S_PAUSE_TAR.tmp" "$K8S_PAUSE_TAR"
  echo "$stamp" >"$K8S_PAUSE_TAR.stamp"
  rm -rf "$work"
}

# kube-router with only its NetworkPolicy controller: the bridge CNI plugin enforces no
# policy, and kube-router's firewall (iptables and ipsets, per pod) runs beside any CNI.
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"
K8S_KUBE_ROUTER_BIN="$NONSTOP_K8S/kube-router-$KUBE_ROUTER_VERSION"

ensure_k8s_kube_router() {
  [ -x "$K8S_KUBE_ROUTER_BIN" ] && return 0
  ensure_host_go
  local gobin
  mkdir -p "$NONSTOP_K8S"
  gobin=$(mktemp -d)
  log "building kube-router $KUBE_ROUTER_VERSION from the Go module proxy (a few minutes, once)"
  (cd /tmp && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gobin" k8s_fetch "$NONSTOP_GO/bin/go" install -trimpath -ldflags='-s -w' \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION") >>"$NONSTOP_K8S/kube-router-build.log" 2>&1 \
    || die "building kube-router failed; see $NONSTOP_K8S/kube-router-build.log"
  mv "$gobin/kube-router" "$K8S_KUBE_ROUTER_BIN"
  rm -rf "$gobin"
}

# Debian's container runtime and CNI plugins the cluster runs on (containerd and runc come
# with docker.io; the bridge, host-local and portmap plugins and conntrack do not; ipset for
# kube-router's policies).
ensure_k8s_host_packages() {
  apt_install containerd runc containernetworking-plugins conntrack iptables ipset
}

# Everything the cluster needs on this machine; each part is skipped when cached.
ensure_k8s_binaries() {
  ensure_k8s_helm
  ensure_k8s_pause_image
  ensure_k8s_kube_router
  ensure_k8s_kube
  export NONSTOP_KUBE="$K8S_KUBE_BIN" NONSTOP_HELM="$K8S_HELM_BIN" NONSTOP_K8S_PAUSE_TAR="$K8S_PAUSE_TAR"
}
