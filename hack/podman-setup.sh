#!/usr/bin/env bash
# podman-setup.sh — make podman usable for hotswap's container tests.
#
# Installs podman and runc from Debian packages if missing and writes a
# containers.conf for them (runtime runc: crun refuses hybrid cgroups v1;
# ulimits within this machine's hard limits, which podman's defaults exceed
# without CAP_SYS_RESOURCE). The file goes to the cache dir, not /etc: callers
# export CONTAINERS_CONF to it, so the machine's own podman config is never
# changed. Prints the containers.conf path on stdout. Idempotent.
#
#   export CONTAINERS_CONF=$(hack/podman-setup.sh)
set -euo pipefail

DEST=${HOTSWAP_PODMAN_DIR:-$HOME/.cache/hotswap/podman}
log() { echo "podman-setup: $*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  [ "$(id -u)" = 0 ] || { log "podman/runc missing and not root: apt-get install -y podman runc"; exit 1; }
  log "installing podman and runc (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq podman runc >&2
fi

# Stay within the hard limits of the machine: a container cannot get more.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=1048576
[ "$nofile" -gt 1048576 ] && nofile=1048576
[ "$nproc" -gt 32768 ] && nproc=32768

mkdir -p "$DEST"
conf=$DEST/containers.conf
cat > "$conf.tmp" <<CONF
# Written by hack/podman-setup.sh; used through CONTAINERS_CONF.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
CONF
mv "$conf.tmp" "$conf"
echo "$conf"
