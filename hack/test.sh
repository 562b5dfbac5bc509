#!/usr/bin/env bash
# Runs every test of hotswap on a fresh machine: installs what the tests
# need (Debian packages, kube-apiserver/etcd/helm/kubectl built from Go
# modules into ~/.cache), checks formatting and vet, then runs unit and e2e
# tests. Re-runs reuse the cache. Needs root (PID/network namespaces).
#
#   hack/test.sh            everything
#   hack/test.sh -short     skip the slowest e2e parts
set -euo pipefail
cd "$(dirname "$0")/.."
SHORT=()
[ "${1:-}" = "-short" ] && SHORT=(-short)

log() { printf '\n=== %s\n' "$*"; }

need_pkgs=()
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
[ -x hack/install-test-deps.sh ] && hack/install-test-deps.sh

log "kube-apiserver, etcd, kubectl, helm, kubelet; containerd, podman (cached under ~/.cache/hotswap)"
# podman first, with Debian's recommended packages (the configuration the
# container and cluster tests were proven with); cluster-deps adds the rest.
hack/podman-setup.sh >/dev/null || echo "podman could not be set up: the container tests will say why and skip"
HOTSWAP_KUBE_ASSETS=$(hack/cluster-deps.sh | tail -n1)
export HOTSWAP_KUBE_ASSETS

log "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed on:"; echo "$unformatted"; exit 1; fi
go vet ./...

log "build: static, no cgo"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /tmp/hotswap-test-build ./cmd/hotswap
# Footprint budget (issue 16, docs/perf-footprint.md): the shipped binary,
# client-go reporting linked, stays within 18 MB. The size is deterministic
# for a toolchain; crossing it usually means something made the linker keep
# every method (text/template's executor, reflect MethodByName) or linked
# k8s.io/api, whose scheme keeps all ~240 core types.
size=$(stat -c %s /tmp/hotswap-test-build)
rm -f /tmp/hotswap-test-build
if [ "$size" -gt 18000000 ]; then
  echo "stripped hotswap is $size bytes, over the 18,000,000-byte budget (docs/perf-footprint.md says what to look for)"; exit 1
fi
heavy=$(go list -deps ./cmd/hotswap | grep -E '^(k8s.io/api/|k8s.io/client-go/kubernetes|k8s.io/client-go/tools/record|k8s.io/apimachinery/pkg/util/strategicpatch|github.com/google/gnostic-models|github.com/prometheus/client_golang|google.golang.org/protobuf)' || true)
if [ -n "$heavy" ]; then
  echo "hotswap links packages it must not (docs/perf-footprint.md):"; echo "$heavy" | head; exit 1
fi
# A build without the Kubernetes features must not link client-go (docs/design.md).
CGO_ENABLED=0 go build -tags nokube -o /dev/null ./cmd/hotswap
if go list -deps -tags nokube ./cmd/hotswap | grep -q '^k8s.io/'; then
  echo "-tags nokube build links Kubernetes packages:"; go list -deps -tags nokube ./cmd/hotswap | grep '^k8s.io/' | head; exit 1
fi

# Packages with concurrency run under the race detector; the e2e packages
# drive real binaries and namespaces and run without it.
race_pkgs=$(go list ./... | grep -v -e /e2e/ -e /cmd/ || true)
other_pkgs=$(go list ./... | grep -e /e2e/ -e /cmd/ || true)

log "unit tests (-race)"
go test -race -count=1 -timeout 20m "${SHORT[@]}" $race_pkgs

log "e2e tests"
go test -count=1 -timeout 40m -p 1 "${SHORT[@]}" $other_pkgs
