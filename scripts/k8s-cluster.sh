#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for the chart's tests (test/e2e/k8s/):
#
#   scripts/k8s-cluster.sh build    build or reuse the cached binaries (scripts/lib/k8s.sh)
#   scripts/k8s-cluster.sh start    start it; prints KEY=value lines for the caller
#                                   (KUBECONFIG, NODE_NAME, NODE_IP, CONTAINERD_ADDRESS, HELM,
#                                   POD_BRIDGE) on stdout, progress on stderr
#   scripts/k8s-cluster.sh stop     stop everything start started, by PID, and undo every
#                                   change it made to the host
#
# Upstream Kubernetes (etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy
# from one multicall binary) on Debian's containerd, runc and CNI plugins, with a containerd
# of its own (own socket and directories; Docker's is never touched) and its state under
# $NONSTOP_K8S_STATE. Nothing it runs listens beyond this machine: the node's address sits
# on an empty bridge of its own (this kernel has no dummy links, and the kubelet refuses a
# loopback node IP), the apiserver and kubelet bind that address, everything else loopback.
# Pods may reach each other, the node and Services; nothing they send is forwarded off the
# machine. No CoreDNS, no registry: images are imported into the cluster's containerd.
#
# Host changes, all undone by `stop`: the two bridges, three tagged FORWARD rules (Docker
# set the FORWARD policy to DROP, and br_netfilter is on), the chains the kubelet and
# kube-proxy add, the sysctls the kubelet sets (vm.overcommit_memory, kernel.panic,
# kernel.panic_on_oops: saved at start, restored at stop), kubepods cgroups, pod netns and
# mounts, and the log directories the kubelet hard-codes when they did not exist before.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"
# shellcheck source=lib/base-images.sh
source "$(dirname "$0")/lib/base-images.sh"
# shellcheck source=lib/k8s.sh
source "$(dirname "$0")/lib/k8s.sh"

S="${NONSTOP_K8S_STATE:-/var/lib/nonstop-k8s}"
P="$S/pki"; L="$S/logs"; R="$S/run"
NODE=nonstop-k8s
# Private ranges no Docker address pool or the recipe's probe cluster uses.
NODE_IP=10.201.0.1
NODE_LINK=nsk8s0
POD_BRIDGE=nsk8sbr0
POD_CIDR=10.245.0.0/24
SERVICE_CIDR=10.97.0.0/16
SERVICE_APISERVER_IP=10.97.0.1
# No CoreDNS runs: a pod's DNS query to this address is dropped on the way off the machine.
CLUSTER_DNS=10.97.0.10
ETCD_CLIENT_PORT=22379
ETCD_PEER_PORT=22380
FWD_TAG=nonstop-k8s
CTR=(ctr --address "$R/containerd.sock" -n k8s.io)

forward_rules() {
  # Inserted at the top in this order, they end up as: to the pod bridge ACCEPT, within it
  # ACCEPT, anything else from it DROP (pods never reach beyond this machine).
  printf '%s\n' "-i $POD_BRIDGE -j DROP" "-i $POD_BRIDGE -o $POD_BRIDGE -j ACCEPT" "-o $POD_BRIDGE -j ACCEPT"
}

write_pki() {
  [ -f "$P/admin.kubeconfig" ] && return 0
  log "cluster PKI (a CA, component certificates, kubeconfigs) into $P"
  mkdir -p "$P"
  (
    cd "$P"
    umask 077
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -key ca.key -days 3650 -subj "/CN=nonstop-k8s-ca" -out ca.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    mk() { # name CN O SAN
      openssl genrsa -out "$1.key" 2048 2>/dev/null
      local subj="/CN=$2"
      [ -n "$3" ] && subj="/O=$3/CN=$2"
      openssl req -new -key "$1.key" -subj "$subj" -out "$1.csr" 2>/dev/null
      if [ -n "$4" ]; then printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$4" >"$1.ext"
      else printf 'extendedKeyUsage=clientAuth\n' >"$1.ext"; fi
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    mk apiserver kube-apiserver "" "IP:$NODE_IP,IP:$SERVICE_APISERVER_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    mk apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    mk admin kubernetes-admin system:masters ""
    mk kubelet "system:node:$NODE" system:nodes ""
    mk controller-manager system:kube-controller-manager "" ""
    mk scheduler system:kube-scheduler "" ""
    mk kube-proxy system:kube-proxy "" ""
    for n in admin kubelet controller-manager scheduler kube-proxy; do
      cat >"$n.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $NODE
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$P/ca.crt"}
users:
- name: $n
  user: {client-certificate: "$P/$n.crt", client-key: "$P/$n.key"}
contexts:
- name: $NODE
  context: {cluster: $NODE, user: $n}
current-context: $NODE
KC
    done
  )
}

write_configs() {
  mkdir -p "$S/containerd" "$S/cni/net.d" "$S/cni/ipam" "$S/kubelet" "$S/etcd" "$L" "$R"
  cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$R/containerd.sock"
[ttrpc]
  address = "$R/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_REF"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The kubelet asks for oom_score_adj -998 on sandboxes; without CAP_SYS_RESOURCE on this
  # kind of VM runc then fails every sandbox with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$R/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
EOF
  cat >"$S/cni/net.d/10-nonstop-k8s.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "nonstop-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$S/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$S/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
cgroupDriver: cgroupfs
# This kind of machine runs cgroup v1; 1.34 still runs there when told so.
failCgroupV1: false
containerRuntimeEndpoint: unix://$R/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS]
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# The disk is shared with Docker and builds: evict on nearly full only, and never collect
# images (there is no registry to pull them back from).
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  cat >"$S/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $P/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts (none are used) only on the node's own address; conntrack sysctls and
# route_localnet are left as the host has them.
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
}

bg() { # name command...
  local name="$1"; shift
  nohup "$@" >"$L/$name.log" 2>&1 &
  echo $! >"$R/$name.pid"
}

waitfor() { # what command...
  local what="$1"; shift
  for _ in $(seq 1 240); do
    if "$@" >/dev/null 2>&1; then log "$what: ok"; return 0; fi
    sleep 0.5
  done
  die "$what: not ready after 120 s (logs in $L)"
}

kc() { kubectl --kubeconfig "$P/admin.kubeconfig" "$@"; }

start() {
  need_root "the test cluster"
  ensure_k8s_host_packages
  ensure_k8s_binaries
  local kube="$K8S_KUBE_BIN"
  write_pki
  write_configs
  if [ -f "$R/kubelet.pid" ] && kill -0 "$(cat "$R/kubelet.pid")" 2>/dev/null; then
    die "a cluster from $S is already running (scripts/k8s-cluster.sh stop)"
  fi
  # What start finds, so that stop restores exactly that.
  if [ ! -f "$R/host-before" ]; then
    {
      sysctl -e vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.conf.all.route_localnet | sed 's/^/sysctl /'
      local d
      for d in /var/log/pods /var/log/containers /var/lib/kubelet; do [ -e "$d" ] && echo "existed $d"; done
      nft list table inet nonstop_gateway >/dev/null 2>&1 && echo "existed nft-nonstop_gateway"
      nft list tables | sed 's/^table /nft-table /'
      ipset list -n 2>/dev/null | sed 's/^/ipset /'
      true
    } >"$R/host-before"
  fi

  # A fresh cluster each start (the PKI is kept).
  grep -q " $S/" /proc/mounts && die "mounts under $S remain from an earlier run (scripts/k8s-cluster.sh stop)"
  rm -rf "$S/etcd" "$S/kubelet" "$S/cni/ipam"
  mkdir -p "$S/etcd" "$S/kubelet" "$S/cni/ipam"

  ip link show "$NODE_LINK" >/dev/null 2>&1 || {
    ip link add "$NODE_LINK" type bridge
    ip addr add "$NODE_IP/32" dev "$NODE_LINK"
    ip link set "$NODE_LINK" up
  }
  local r
  while read -r r; do
    # shellcheck disable=SC2086 # each rule is a list of iptables words
    iptables -C FORWARD $r -m comment --comment "$FWD_TAG" 2>/dev/null || iptables -I FORWARD 1 $r -m comment --comment "$FWD_TAG"
  done < <(forward_rules)

  if ! [ -S "$R/containerd.sock" ]; then
    # An empty image store each start: the suite imports what it runs, and images of earlier
    # runs (every source change makes new ones) would otherwise pile up on the shared disk.
    rm -rf "$S/containerd/root" "$S/containerd/state"
    bg containerd containerd --config "$S/containerd/config.toml"
    waitfor containerd "${CTR[@]}" version
    "${CTR[@]}" images import "$K8S_PAUSE_TAR" >/dev/null
  fi

  bg etcd "$kube" etcd --name default --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls ""
  waitfor etcd curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

  bg apiserver "$kube" apiserver --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP
  waitfor apiserver curl -sf --cacert "$P/ca.crt" "https://$NODE_IP:6443/readyz"

  bg controller-manager "$kube" controller-manager --kubeconfig="$P/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$P/controller-manager.kubeconfig" --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR"
  bg scheduler "$kube" scheduler --kubeconfig="$P/scheduler.kubeconfig" \
    --authentication-kubeconfig="$P/scheduler.kubeconfig" --authorization-kubeconfig="$P/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false
  bg kubelet "$kube" kubelet --config="$S/kubelet-config.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
    --root-dir="$S/kubelet" --hostname-override="$NODE" --node-ip="$NODE_IP" --cert-dir="$S/kubelet/pki"
  bg kube-proxy "$kube" proxy --config="$S/kube-proxy-config.yaml"
  waitfor kube-proxy curl -sf http://127.0.0.1:10256/healthz
  # NetworkPolicy enforcement (the bridge plugin has none): kube-router's firewall alone, no
  # routing, no service proxy, no CNI of its own, no health or metrics listener. It rejects
  # what no policy allows for every pod a policy selects, at the node's INPUT, FORWARD and
  # OUTPUT hooks; an admin kubeconfig, like the rest of this test cluster.
  bg kube-router "$K8S_KUBE_ROUTER_BIN" --kubeconfig="$P/admin.kubeconfig" --hostname-override="$NODE" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false --enable-pod-egress=false \
    --service-cluster-ip-range="$SERVICE_CIDR" --health-port=0 --metrics-port=0
  waitfor "kube-router policy chains" iptables -S KUBE-ROUTER-INPUT
  waitfor "node registered" kc get node "$NODE"
  waitfor "node Ready" kc wait --for=condition=Ready "node/$NODE" --timeout=1s
  # A pod created before the default ServiceAccount exists is refused.
  waitfor "default ServiceAccount" kc -n default get serviceaccount default
  printf '%s\n' "KUBECONFIG=$P/admin.kubeconfig" "NODE_NAME=$NODE" "NODE_IP=$NODE_IP" \
    "CONTAINERD_ADDRESS=$R/containerd.sock" "HELM=$K8S_HELM_BIN" "POD_BRIDGE=$POD_BRIDGE" "NETWORK_POLICY=kube-router"
}

stop_pid() { # name
  local f="$R/$1.pid" p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop() {
  need_root "the test cluster"
  # 1. While the kubelet runs it tears pods down properly (CNI DEL, volumes, cgroups).
  if [ -f "$R/kubelet.pid" ] && kill -0 "$(cat "$R/kubelet.pid")" 2>/dev/null; then
    timeout 90 kubectl --kubeconfig "$P/admin.kubeconfig" delete daemonsets,deployments,statefulsets,replicasets,pods --all -A \
      --wait=true --grace-period=5 >/dev/null 2>&1 || log "stop: some pods were still running; killing their containers"
  fi
  stop_pid kube-router
  stop_pid kube-proxy
  if [ -x "$K8S_KUBE_BIN" ]; then "$K8S_KUBE_BIN" proxy --cleanup >/dev/null 2>&1 || true; fi
  stop_pid scheduler
  stop_pid controller-manager
  stop_pid kubelet
  # 2. Whatever still runs in our containerd (sandboxes of pods not deleted in time).
  if [ -S "$R/containerd.sock" ]; then
    local t
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 1
    for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_pid apiserver
  stop_pid etcd
  stop_pid containerd
  rm -f "$R/containerd.sock" "$R/containerd.sock.ttrpc"
  # 3. Mounts, pod netns, cgroups, links, rules, sysctls.
  local m n c
  awk -v s="$S" '$2 ~ "^"s || $2 ~ "^/run/netns/cni-" {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for n in /run/netns/cni-*; do [ -e "$n" ] && rm -f "$n"; done
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  local r
  while read -r r; do
    # shellcheck disable=SC2086 # each rule is a list of iptables words
    while iptables -D FORWARD $r -m comment --comment "$FWD_TAG" 2>/dev/null; do :; done
  done < <(forward_rules)
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  ip link del "$NODE_LINK" 2>/dev/null || true
  # kube-router's policy chains and the jumps to them, and its ipsets (its --cleanup-config
  # crashes in its service proxy's part in v2.1.0, before it removes the jumps).
  local ch rule
  for ch in INPUT FORWARD OUTPUT; do
    mapfile -t rules < <(iptables -S "$ch" 2>/dev/null)
    for rule in "${rules[@]}"; do
      # iptables -S quotes the comment as a shell word; eval reads it back as one argument.
      [[ "$rule" == *"kube-router netpol"* ]] && eval "iptables ${rule/-A /-D }"
    done
  done
  mapfile -t rules < <(iptables -S 2>/dev/null | sed -n 's/^-N \(KUBE-ROUTER-[A-Z]*\|KUBE-POD-FW-[A-Z0-9]*\|KUBE-NWPLCY-[A-Z0-9]*\)$/\1/p')
  for ch in "${rules[@]}"; do iptables -F "$ch" 2>/dev/null || true; done
  for ch in "${rules[@]}"; do iptables -X "$ch" 2>/dev/null || true; done
  if [ -f "$R/host-before" ]; then
    mapfile -t rules < <(ipset list -n 2>/dev/null)
    for ch in "${rules[@]}"; do grep -qx "ipset $ch" "$R/host-before" || ipset destroy "$ch" 2>/dev/null || true; done
  fi
  # The chains the kubelet makes for itself (kube-proxy --cleanup removed kube-proxy's).
  local ipt tb ch
  for ipt in iptables ip6tables; do
    while $ipt -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while $ipt -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    for tb in filter nat mangle; do
      for ch in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $ipt -t "$tb" -F "$ch" 2>/dev/null || true
        $ipt -t "$tb" -X "$ch" 2>/dev/null || true
      done
    done
  done
  if [ -f "$R/host-before" ]; then
    local key _eq value
    while read -r key _eq value; do
      sysctl -q -w "$key=$value" >/dev/null || log "stop: could not restore $key=$value"
    done < <(sed -n 's/^sysctl //p' "$R/host-before")
    local d
    for d in /var/log/pods /var/log/containers /var/lib/kubelet; do
      grep -qx "existed $d" "$R/host-before" || rm -rf "$d"
    done
    # A gateway pod killed before it removed its nftables table (hostNetwork: the host's).
    grep -qx "existed nft-nonstop_gateway" "$R/host-before" || nft delete table inet nonstop_gateway 2>/dev/null || true
    # Tables iptables-nft made for the kubelet and kube-proxy (ip mangle, ip6 filter, ...):
    # removed when they were not there before and hold no rule now.
    local family table
    while read -r _ family table; do
      grep -qx "nft-table $family $table" "$R/host-before" && continue
      [ "$(nft list table "$family" "$table" 2>/dev/null | grep -cvE '^[[:space:]]*(table |chain |type |\}|$)')" = 0 ] \
        && { nft delete table "$family" "$table" 2>/dev/null || true; }
    done < <(nft list tables 2>/dev/null)
    rm -f "$R/host-before"
  fi
  rm -rf "$R/runc"
  # The images the run imported (about 1 GB): nothing pulls them back, each start imports anew.
  grep -q " $S/" /proc/mounts || rm -rf "$S/containerd/root" "$S/containerd/state"
  log "test cluster stopped"
}

case "${1:-}" in
  build) ensure_k8s_binaries ;;
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 build|start|stop" ;;
esac
