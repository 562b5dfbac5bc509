#!/usr/bin/env bash
# Installs the Debian packages the e2e tests drive, only those missing, quietly;
# hack/test.sh runs it. Idempotent: a second run installs nothing and never
# touches the network. Tests whose package is still missing skip and say why.
#
#   nginx haproxy caddy gunicorn python3-uvicorn puma ruby-sd-notify
#                      the servers of e2e/servers (docs/servers.md)
#   binutils binutils-aarch64-linux-gnu qemu-user
#                      internal/tinyshim's test rebuilds the exec shim from
#                      its assembly for amd64 and arm64 (hack/tinyshim.sh)
#                      and runs the arm64 one under qemu-aarch64
set -euo pipefail

pkgs=(nginx haproxy caddy gunicorn python3-uvicorn puma ruby-sd-notify binutils binutils-aarch64-linux-gnu qemu-user)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: not root; missing ${missing[*]}: the tests that need them will skip" >&2
  exit 0
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# No recommends: only the servers, not their optional helpers. Package
# scripts must not start the servers as host services: policy-rc.d says no.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
