#!/usr/bin/env bash
# cluster-deps.sh — install what hack/cluster-up.sh needs, and nothing else:
# Debian packages (containerd, runc, podman, the CNI plugins, openssl,
# iproute2, curl, a static busybox) when missing, and the kube binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl, helm) built by
# hack/kube-assets.sh --cluster into ~/.cache (about 8.5 min cold, 0 s warm).
#
#   hack/cluster-deps.sh        prints the kube binary directory (last line)
#
# Idempotent. Needs root for the packages.
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
log() { echo "cluster-deps: $*" >&2; }

pkgs=()
command -v containerd >/dev/null || pkgs+=(containerd)
[ -x /usr/sbin/runc ] || pkgs+=(runc)
command -v podman >/dev/null || pkgs+=(podman)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || pkgs+=(containernetworking-plugins)
[ -x /usr/bin/catatonit ] || pkgs+=(catatonit)
command -v openssl >/dev/null || pkgs+=(openssl)
command -v ip >/dev/null && command -v ss >/dev/null || pkgs+=(iproute2)
command -v curl >/dev/null || pkgs+=(curl)
# A static busybox: the tools image the e2e tests attach to FROM-scratch pods
# with `kubectl debug` (kubectl cp needs a tar in the container).
dpkg -s busybox-static >/dev/null 2>&1 || pkgs+=(busybox-static)
command -v setsid >/dev/null || pkgs+=(util-linux)
if [ ${#pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${pkgs[*]} and not root: apt-get install -y ${pkgs[*]}"; exit 1; }
  log "installing ${pkgs[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi
# The containerd package may start a daemon on machines with an init system;
# the cluster runs its own, with its own socket: that one is left alone.

"$HACK/kube-assets.sh" --cluster | tail -n1
