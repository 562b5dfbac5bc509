#!/usr/bin/env bash
# cluster-down.sh — stop the test cluster started by hack/cluster-up.sh in
# WORKDIR and undo everything it did to the machine.
#
#   hack/cluster-down.sh WORKDIR
#
# Order: pods are deleted through the API first (workload controllers too, so
# nothing re-creates them), so each gets its graceful termination from a live
# kubelet; then the kubelet; any container left is killed through containerd;
# then scheduler, controller-manager, apiserver, etcd, containerd (SIGTERM,
# SIGKILL after 10 s; a zombie counts as stopped). Then mounts under WORKDIR
# and network namespaces it made are unmounted, the bridge is deleted, the
# sysctls the kubelet changed are restored and host directories that did not
# exist before are removed. WORKDIR keeps only logs/.
#
# Idempotent: safe on a WORKDIR that is half up, down, or never was up.
# Exits non-zero if anything could not be removed (and says what).
set -uo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -d "$1" ] || exit 0
W=$(cd "$1" && pwd)
source "$HACK/cluster/lib.sh"
T0=$(date +%s%N)
lap() { log "down $(( ($(date +%s%N) - T0) / 1000000 )) ms: $*"; }
problems=()

KUBECTL=
if [ -f "$W/env" ]; then KUBECTL="$(sed -n 's/^KUBE_BIN=//p' "$W/env")/kubectl --kubeconfig $W/kubeconfig --request-timeout=10s"; fi
pid_alive() { [ -f "$W/$1.pid" ] && alive "$(cat "$W/$1.pid")"; }

# ---- 1. pods, through the API, while the kubelet can still stop them gracefully
if [ -n "$KUBECTL" ] && pid_alive apiserver; then
  $KUBECTL delete deployments,replicasets,statefulsets,daemonsets,jobs --all -A --wait=false >/dev/null 2>&1
  if pid_alive kubelet; then
    $KUBECTL delete pods --all -A --wait=true --timeout=60s >/dev/null 2>&1 || log "pods not all gone after 60 s; killing their containers"
  fi
  lap "pods deleted"
fi
stop kubelet
lap "kubelet stopped"

# ---- 2. containers the kubelet did not stop (it was killed, or pods were stuck)
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
if pid_alive containerd; then
  for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -a -s KILL "$c" >/dev/null 2>&1; done
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    for i in 1 2 3 4 5 6 7 8 9 10; do ctr_ tasks rm -f "$c" >/dev/null 2>&1 && break; ctr_ tasks ls -q 2>/dev/null | grep -qx "$c" || break; sleep 0.2; done
    ctr_ containers rm "$c" >/dev/null 2>&1
  done
fi

# ---- 3. the control plane and containerd
for c in scheduler controller-manager apiserver etcd containerd; do stop "$c"; done
lap "control plane and containerd stopped"
# Shims outlive containerd by design; ours name our socket on their command line.
for p in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null); do
  kill -KILL "$p" 2>/dev/null
done
for p in $(pgrep -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null); do
  alive "$p" && problems+=("containerd shim $p still running")
done

# ---- 4. mounts: containerd's rootfs and shm, the kubelet's volumes, netns
grep -o " $W/[^ ]*" /proc/mounts | sort -ru | while read -r m; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
done
if [ -f "$W/state/netns.before" ]; then
  for ns in $(ls /run/netns 2>/dev/null | sort | comm -13 "$W/state/netns.before" -); do
    case $ns in cni-*) umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns" ;; esac
  done
fi
left=$(grep -c " $W/" /proc/mounts)
[ "$left" = 0 ] || problems+=("$left mounts under $W remain: $(grep " $W/" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')")
lap "unmounted"

# ---- 5. network, sysctls, host directories
if [ -e /sys/class/net/$BRIDGE ] && [ -e "$W/state" ]; then
  # veths of pods whose netns went away are gone with it; the bridge is ours.
  ip link del "$BRIDGE" 2>/dev/null || problems+=("cannot delete $BRIDGE")
fi
if [ -f "$W/state/sysctl.saved" ]; then
  while IFS= read -r kv; do
    [ "$(sysctl -n "${kv%%=*}" 2>/dev/null)" = "${kv#*=}" ] || sysctl -q -w "$kv" >/dev/null 2>&1 || problems+=("cannot restore sysctl $kv")
  done <"$W/state/sysctl.saved"
fi
if [ -f "$W/state/dirs.absent" ]; then
  while IFS= read -r d; do
    [ -e "$d" ] || continue
    # Only what the cluster left: symlinks into WORKDIR, sockets, empty directories.
    find "$d" -xdev \( -type l -lname "$W/*" -o -type s \) -delete 2>/dev/null
    find "$d" -xdev -depth -type d -empty -delete 2>/dev/null
    [ -e "$d" ] && problems+=("$d was created by the cluster and is not empty")
  done <"$W/state/dirs.absent"
fi
# /var/log/containers may exist already; drop only our symlinks from it.
find /var/log/containers -maxdepth 1 -type l -lname "$W/*" -delete 2>/dev/null

# ---- 6. WORKDIR: keep the logs
for p in $COMPONENTS; do pid_alive "$p" && problems+=("$p (pid $(cat "$W/$p.pid")) still running"); done
if [ "$(grep -c " $W/" /proc/mounts)" = 0 ]; then
  find "$W" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
fi
lap "done"
if [ ${#problems[@]} -gt 0 ]; then
  printf 'cluster: down: %s\n' "${problems[@]}" >&2
  exit 1
fi
