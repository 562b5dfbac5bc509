#!/usr/bin/env bash
# cluster-up.sh — a real single-node Kubernetes cluster on this machine, for
# hotswap's e2e tests: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd and a kubelet, all as plain processes.
#
#   hack/cluster-up.sh WORKDIR [--image REF]...
#
# Everything the cluster keeps lives in WORKDIR (certificates, etcd data,
# containerd root and state, kubelet root, logs under WORKDIR/logs). Pods get
# addresses on a bridge made for the cluster (hscluster0, 10.244.250.0/24 by
# default), which is also where the apiserver, etcd and the kubelet listen, so
# nothing binds an outside address and tests reach pods directly.
# Pods reach the apiserver at KUBERNETES_SERVICE_HOST=$GATEWAY (there is no
# kube-proxy): WORKDIR/env says which.
#
# --image REF imports a podman image into the cluster's containerd (pods use
# it with imagePullPolicy: Never); hack/cluster-import.sh does it later.
#
# Idempotent: on a WORKDIR whose cluster is up and healthy it only imports
# the images; a half-started or dead one is torn down and started again.
# Stop with hack/cluster-down.sh WORKDIR (it leaves no process, mount,
# network device or sysctl change behind).
#
# Prints the path of WORKDIR/env (KUBECONFIG, KUBE_BIN, CONTAINERD_ADDRESS,
# GATEWAY, NODE, APISERVER) on stdout. Exit codes: 0 up, 1 failed (see the
# logs named in the message), 2 usage, 3 this machine cannot run a cluster
# (missing kernel feature or not root): tests skip on 3 only.
#
# Needs (installed by hack/cluster-deps.sh, which this runs first): containerd,
# runc, podman, openssl, iproute2, the CNI plugins, and kube binaries built by
# hack/kube-assets.sh --cluster. Environment: HOTSWAP_KUBE_ASSETS (kube binary
# dir), HOTSWAP_CLUSTER_SUBNET (a /24 prefix, default 10.244.250),
# HOTSWAP_CLUSTER_NODE (node name, default hotswap-node).
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HACK")

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
mkdir -p "$1"
W=$(cd "$1" && pwd); shift
IMAGES=()
while [ $# -gt 0 ]; do
  case $1 in
    --image) [ $# -ge 2 ] || usage; IMAGES+=("$2"); shift 2 ;;
    *) echo "cluster-up: unknown argument $1" >&2; usage ;;
  esac
done

source "$HACK/cluster/lib.sh"

# ---- can this machine run a cluster at all? (exit 3: tests skip)
cannot() { echo "cluster-up: this machine cannot run the test cluster: $*" >&2; exit 3; }
[ "$(id -u)" = 0 ] || cannot "not root (the kubelet and containerd need root)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || cannot "no overlay file system in the kernel (containerd's snapshotter needs it)"
grep -q cgroup /proc/filesystems || cannot "no cgroup file system"
[ -d /sys/fs/cgroup ] && [ -n "$(ls /sys/fs/cgroup 2>/dev/null)" ] || cannot "no cgroups mounted under /sys/fs/cgroup"
if [ ! -e /sys/class/net/$BRIDGE ]; then
  ip link add hscprobe0 type bridge 2>/dev/null || cannot "cannot create a bridge device (no bridge support or no CAP_NET_ADMIN)"
  ip link del hscprobe0
fi

# ---- installs (apt packages, kube binaries): never a reason to skip
KUBE_BIN=$("$HACK/cluster-deps.sh" | tail -n1)
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  [ -x "$KUBE_BIN/$b" ] || die "$KUBE_BIN/$b missing after hack/cluster-deps.sh"
done

# ---- already up?
if [ -f "$W/env" ] && all_alive && "$KUBE_BIN/kubectl" --kubeconfig "$W/kubeconfig" --request-timeout=5s \
     get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
  log "already up in $W"
  for img in "${IMAGES[@]}"; do "$HACK/cluster-import.sh" "$W" "$img" >/dev/null; done
  echo "$W/env"; exit 0
fi
if [ -e "$W/state" ] || ls "$W"/*.pid >/dev/null 2>&1; then
  log "a previous cluster in $W is not healthy: tearing it down first"
  "$HACK/cluster-down.sh" "$W" >&2
fi
# Another cluster of ours elsewhere would fight over the bridge and ports.
if [ -e /sys/class/net/$BRIDGE ]; then
  die "network device $BRIDGE exists: another cluster is running (hack/cluster-down.sh ITS_WORKDIR), or remove it: ip link del $BRIDGE"
fi
for port in 10250 10248; do
  if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then die "port $port is in use (a kubelet running?): $(ss -Hltnp "sport = :$port")"; fi
done

T0=$(date +%s%N)
lap() { log "$(( ($(date +%s%N) - T0) / 1000000 )) ms: $*"; }
# From here on, a failure tears down what was started.
trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; logs in $W/logs; tearing down"; "$HACK/cluster-down.sh" "$W" >&2 || true; fi' EXIT

mkdir -p "$W/logs" "$W/state" "$W/pki" "$W/bin" "$W/cni/net.d"
cd "$W"
record_host_state   # sysctls and directories the kubelet/containerd may change, restored by cluster-down

# ---- the bridge: pods' network, and the only address the control plane uses
ip link add "$BRIDGE" type bridge
ip addr add "$GATEWAY/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
lap "bridge $BRIDGE $GATEWAY/24"

# ---- PKI: one CA signs every certificate
P=$W/pki
# P-256 keys: as good as RSA here and much faster to make on a busy machine.
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
openssl req -x509 "${EC[@]}" -nodes -keyout $P/ca.key -out $P/ca.crt -days 7 -subj "/CN=hotswap-test-ca" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out $P/sa.key 2>/dev/null
openssl ec -in $P/sa.key -pubout -out $P/sa.pub 2>/dev/null
cert() { # NAME SUBJECT EXTENSIONS
  openssl req "${EC[@]}" -nodes -keyout "$P/$1.key" -out "$P/$1.csr" -subj "$2" 2>/dev/null
  printf '%b' "$3" > "$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA $P/ca.crt -CAkey $P/ca.key -CAcreateserial -days 7 \
    -out "$P/$1.crt" -extfile "$P/$1.ext" 2>/dev/null
}
cert admin "/O=system:masters/CN=hotswap-admin" "extendedKeyUsage=clientAuth\n"
cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$GATEWAY,IP:10.0.0.1\n"
# The apiserver's client identity towards the kubelet (exec, logs, port-forward).
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth\n"
# The kubelet: a serving certificate the apiserver verifies, and a client one
# with a node identity (Node authorizer + NodeRestriction, as on a real node).
cert kubelet-serving "/CN=system:node:$NODE" "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:$NODE,IP:$GATEWAY,IP:127.0.0.1\n"
cert kubelet-client "/O=system:nodes/CN=system:node:$NODE" "extendedKeyUsage=clientAuth\n"
lap "certificates"

kubeconfig() { # FILE CERT-NAME
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: hotswap-test
  cluster: {server: "https://$GATEWAY:$APISERVER_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: u
  user: {client-certificate: "$P/$2.crt", client-key: "$P/$2.key"}
contexts:
- name: hotswap-test
  context: {cluster: hotswap-test, user: u, namespace: default}
current-context: hotswap-test
KC
}
kubeconfig "$W/kubeconfig" admin
kubeconfig "$W/state/kubelet.kubeconfig" kubelet-client

# ---- etcd and kube-apiserver
start etcd "$KUBE_BIN/etcd" --name hotswap-test --data-dir "$W/state/etcd" \
  --listen-client-urls "http://$GATEWAY:$ETCD_PORT" --advertise-client-urls "http://$GATEWAY:$ETCD_PORT" \
  --listen-peer-urls "http://$GATEWAY:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://$GATEWAY:$((ETCD_PORT + 1))" \
  --initial-cluster "hotswap-test=http://$GATEWAY:$((ETCD_PORT + 1))" \
  --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
wait_for etcd 20 curl -sf "http://$GATEWAY:$ETCD_PORT/health"
lap "etcd ready"

start apiserver "$KUBE_BIN/kube-apiserver" \
  --etcd-servers="http://$GATEWAY:$ETCD_PORT" \
  --bind-address="$GATEWAY" --advertise-address="$GATEWAY" --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
  --profiling=false
wait_for apiserver 120 sh -c "curl -sf --cacert '$P/ca.crt' --cert '$P/admin.crt' --key '$P/admin.key' https://$GATEWAY:$APISERVER_PORT/readyz | grep -qx ok"
lap "apiserver ready"

start controller-manager "$KUBE_BIN/kube-controller-manager" --kubeconfig="$W/kubeconfig" \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --use-service-account-credentials=false --leader-elect=false --secure-port=0
start scheduler "$KUBE_BIN/kube-scheduler" --kubeconfig="$W/kubeconfig" --leader-elect=false --secure-port=0

# ---- containerd: its own root, state and socket; runc through runc-wrap
go build -C "$REPO" -o "$W/bin/runc-wrap" ./hack/cluster/runc-wrap
# Pods get an address on the bridge; no masquerading (no iptables rule is
# added) and no default route out: pods talk to the host's bridge address only.
cat > "$W/cni/net.d/10-hotswap.conflist" <<J
{"cniVersion": "0.4.0", "name": "hotswap-test", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$W/state/cni-ipam",
            "ranges": [[{"subnet": "$SUBNET.0/24", "gateway": "$GATEWAY", "rangeStart": "$SUBNET.10"}]]}},
  {"type": "loopback"}]}
J
cat > "$W/state/containerd.toml" <<T
version = 2
root = "$W/state/containerd-root"
state = "$W/state/containerd-state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/state/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "$W/bin/runc-wrap"
  Root = "$W/state/runc"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN"
  conf_dir = "$W/cni/net.d"
T
start containerd containerd --config "$W/state/containerd.toml"
wait_for containerd 20 ctr --address "$CONTAINERD_SOCK" version
lap "containerd ready"

# Images: the pause image (catatonit, as podman's own pause image), then the caller's.
"$HACK/cluster-import.sh" "$W" --pause >/dev/null
for img in "${IMAGES[@]}"; do "$HACK/cluster-import.sh" "$W" "$img" >/dev/null; done
lap "images imported"

# ---- kubelet
cat > "$W/state/kubelet.yaml" <<K
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroups v1 (hybrid) and no systemd on these machines: cgroupfs, no QoS tree.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $GATEWAY
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
# Leave the host's iptables alone; pod logs stay in WORKDIR.
makeIPTablesUtilChains: false
podLogsDir: $W/state/pod-logs
# A test machine's disk may be fuller than a node's: never evict for it.
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
fileCheckFrequency: 5s
serializeImagePulls: false
K
start kubelet "$KUBE_BIN/kubelet" --config="$W/state/kubelet.yaml" --kubeconfig="$W/state/kubelet.kubeconfig" \
  --hostname-override="$NODE" --node-ip="$GATEWAY" --root-dir="$W/state/kubelet-root"
wait_for kubelet 120 sh -c "'$KUBE_BIN/kubectl' --kubeconfig '$W/kubeconfig' get node '$NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null | grep -qx True"
lap "node $NODE Ready"
# Nothing creates ServiceAccounts before the controller-manager's first sync:
# wait for "default", which every pod needs.
wait_for controller-manager 60 "$KUBE_BIN/kubectl" --kubeconfig "$W/kubeconfig" get serviceaccount default -n default

cat > "$W/env" <<E
KUBECONFIG=$W/kubeconfig
KUBE_BIN=$KUBE_BIN
CONTAINERD_ADDRESS=$CONTAINERD_SOCK
GATEWAY=$GATEWAY
APISERVER=https://$GATEWAY:$APISERVER_PORT
APISERVER_PORT=$APISERVER_PORT
NODE=$NODE
SUBNET=$SUBNET.0/24
E
lap "cluster up"
trap - EXIT
echo "$W/env"
