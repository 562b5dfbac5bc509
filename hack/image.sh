#!/usr/bin/env bash
# image.sh — build the hotswap image with podman on a machine without a
# registry: the binary is built on the host (static, stripped, CGO_ENABLED=0,
# exactly as the Dockerfile's build stage does) and hack/Containerfile.prebuilt
# puts it into the same FROM-scratch final stage as the Dockerfile.
#
#   hack/image.sh                 build localhost/hotswap:dev
#   hack/image.sh -t NAME:TAG     another tag
#   IMAGE_BUILDER=docker hack/image.sh   with docker instead of podman
#
# With a registry, the plain multi-stage build is the one to use:
#   docker build -t hotswap .      (or podman build -t hotswap .)
#
# Prints the image name on stdout (last line). Installs podman first if
# needed (hack/podman-setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=localhost/hotswap:dev
while [ $# -gt 0 ]; do
  case $1 in
    -t) TAG=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
BUILDER=${IMAGE_BUILDER:-podman}
if [ "$BUILDER" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
  CONTAINERS_CONF=$(hack/podman-setup.sh)
  export CONTAINERS_CONF
fi
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/run" "$ctx/rootfs/tmp" "$ctx/owned/run/hotswap"
echo "image.sh: building hotswap $VERSION (static, stripped)" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$ctx/rootfs/hotswap" ./cmd/hotswap
# The same layout as the Dockerfile's build stage.
ln -s /hotswap "$ctx/rootfs/bin/kill"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ctx/rootfs/etc/group"
chmod 0755 "$ctx/rootfs/hotswap" "$ctx/rootfs/run"; chmod 1777 "$ctx/rootfs/tmp"

echo "image.sh: $BUILDER build -t $TAG" >&2
extra=()
# podman keeps the first stage as a dangling image unless told not to.
[ "$BUILDER" = podman ] && extra=(--layers=false)
"$BUILDER" build -q "${extra[@]}" -f hack/Containerfile.prebuilt -t "$TAG" "$ctx" >&2
echo "$TAG"
