#!/usr/bin/env bash
# cluster-import.sh — make podman images available to the test cluster's
# containerd (there is no registry: pods use them with imagePullPolicy: Never).
#
#   hack/cluster-import.sh WORKDIR REF...     podman save REF | ctr import
#   hack/cluster-import.sh WORKDIR --pause    the pod sandbox ("pause") image
#
# The pause image is what podman itself uses as its pause image: catatonit -P
# in a FROM-scratch image, built once and cached as a tarball under
# ~/.cache/hotswap/cluster (the podman copy is removed again), then tagged as
# the sandbox_image of the cluster's containerd config.
set -euo pipefail
HACK=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
W=$(cd "$1" && pwd); shift
source "$HACK/cluster/lib.sh"
[ -S "$CONTAINERD_SOCK" ] || die "no containerd at $CONTAINERD_SOCK: hack/cluster-up.sh $W first"
ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }
if [ -z "${CONTAINERS_CONF:-}" ] && [ -x "$HACK/podman-setup.sh" ]; then
  CONTAINERS_CONF=$("$HACK/podman-setup.sh" | tail -n1); export CONTAINERS_CONF
fi

for ref in "$@"; do
  if [ "$ref" = --pause ]; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/hotswap/cluster
    sum=$(sha256sum /usr/bin/catatonit | cut -c1-12)
    tar=$cache/pause-$sum.tar
    if [ ! -s "$tar" ]; then
      mkdir -p "$cache"
      ctx=$(mktemp -d)
      cp /usr/bin/catatonit "$ctx/catatonit"
      printf 'FROM scratch\nCOPY catatonit /catatonit\nENTRYPOINT ["/catatonit", "-P"]\n' >"$ctx/Containerfile"
      podman build -q -t "$PAUSE_IMAGE" "$ctx" >/dev/null
      podman save -q -o "$tar.tmp" "$PAUSE_IMAGE"
      podman rmi -f "$PAUSE_IMAGE" >/dev/null
      rm -rf "$ctx"
      mv "$tar.tmp" "$tar"
    fi
    ctr_ images import "$tar" >/dev/null
    echo "$PAUSE_IMAGE"
    continue
  fi
  podman image exists "$ref" || die "no podman image $ref (build it first, e.g. hack/image.sh)"
  podman save -q "$ref" | ctr_ images import - >/dev/null
  echo "$ref"
done
