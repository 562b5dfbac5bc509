#!/usr/bin/env bash
# kube-assets.sh — build the real Kubernetes parts hotswap's tests run against.
#
# Builds kube-apiserver, kubectl, etcd and helm from the Go module proxy (no
# prebuilt downloads exist on these machines) into a cache directory and
# prints that directory on stdout. Idempotent: binaries already present at the
# wanted version are kept, so a warm run takes well under a second.
#
#   hack/kube-assets.sh            apiserver, kubectl, etcd, helm
#   hack/kube-assets.sh --cluster  also kube-controller-manager, kube-scheduler,
#                                  kubelet (the real-cluster e2e needs them)
#
# Environment:
#   HOTSWAP_KUBE_ASSETS  cache dir (default ~/.cache/hotswap/kube-$K8S_VERSION)
#   K8S_VERSION          default v1.37.2 (staging modules follow as v0.37.2)
#   ETCD_VERSION         default v3.7.0 (what kubernetes v1.37 requires)
#   HELM_VERSION         default v4.3.1
#
# Cold cost: about 5 min for the default set, about 3.5 min more with
# --cluster, 2.6 GB peak memory. Only the Go module proxy is contacted.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
HELM_VERSION=${HELM_VERSION:-v4.3.1}
STAGING_VERSION=v0.${K8S_VERSION#v1.}
DEST=${HOTSWAP_KUBE_ASSETS:-$HOME/.cache/hotswap/kube-$K8S_VERSION}

KUBE_BINS="kube-apiserver kubectl"
for arg in "$@"; do
  case $arg in
    --cluster) KUBE_BINS="$KUBE_BINS kube-controller-manager kube-scheduler kubelet" ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kube-assets.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "kube-assets: $*" >&2; }

# has_version BIN: the binary exists, runs, and reports the wanted version.
has_version() {
  local b=$DEST/$1 out
  [ -x "$b" ] || return 1
  case $1 in
    kubectl) out=$("$b" version --client 2>/dev/null) || return 1
             grep -q "Client Version: $K8S_VERSION\$" <<<"$out" ;;
    etcd)    out=$("$b" --version 2>/dev/null) || return 1
             grep -q "etcd Version: ${ETCD_VERSION#v}\$" <<<"$out" ;;
    helm)    out=$("$b" version --short 2>/dev/null) || return 1
             grep -q "^$HELM_VERSION" <<<"$out" ;;
    *)       out=$("$b" --version 2>/dev/null) || return 1
             grep -qx "Kubernetes $K8S_VERSION" <<<"$out" ;;
  esac
}

# check: set missing_kube, need_etcd, need_helm; true when nothing is missing.
check() {
  missing_kube=""
  for b in $KUBE_BINS; do has_version "$b" || missing_kube="$missing_kube $b"; done
  need_etcd=; has_version etcd || need_etcd=1
  need_helm=; has_version helm || need_helm=1
  [ -z "$missing_kube" ] && [ -z "$need_etcd" ] && [ -z "$need_helm" ]
}

mkdir -p "$DEST"
# Warm cache: done, without waiting for a build of other binaries that
# another run may hold the lock for.
if check; then echo "$DEST"; exit 0; fi
# Two runs at once (e.g. the default set in the background and --cluster in
# the foreground) must not build into the same files: serialise on a lock,
# then look again (the other run may have built what we need).
exec 9>"$DEST/.lock"
flock 9
if check; then echo "$DEST"; exit 0; fi

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT

if [ -n "$missing_kube$need_etcd" ]; then
  log "building${missing_kube}${need_etcd:+ etcd} (kubernetes $K8S_VERSION, etcd $ETCD_VERSION) into $DEST"
  cd "$W"
  printf 'module hotswapkubeassets\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n' "$K8S_VERSION" > go.mod
  # k8s.io/kubernetes replaces each staging module with ./staging/src/...,
  # which `go install mod@version` cannot follow: pin each to its published
  # v0.X.Y instead, as the list in kubernetes' own go.mod says.
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$modfile" ] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION go.mod"; exit 1; }
  for m in $(awk '$2=="=>" && $3 ~ /^\.\/staging/ {print $1}' "$modfile"); do
    case $m in k8s.io/sample-*) continue ;; esac # unpublished examples
    echo "replace $m => $m $STAGING_VERSION" >> go.mod
  done
  pkgs=""; for b in $missing_kube; do pkgs="$pkgs k8s.io/kubernetes/cmd/$b"; done
  go get $pkgs ${need_etcd:+go.etcd.io/etcd/server/v3@$ETCD_VERSION} >&2
  if [ -n "$missing_kube" ]; then
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    v="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
    v="$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    v="$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    go build -trimpath -ldflags "-s -w $v" -o "$W/out/" $pkgs >&2
  fi
  [ -z "$need_etcd" ] || go build -trimpath -ldflags "-s -w" -o "$W/out/etcd" go.etcd.io/etcd/server/v3 >&2
  # Move into place only once every build succeeded: a half-built cache
  # never passes for a warm one.
  mv "$W"/out/* "$DEST/"
fi

if [ -n "$need_helm" ]; then
  log "building helm $HELM_VERSION into $DEST"
  GOBIN="$W/helm" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
  mv "$W/helm/helm" "$DEST/helm"
fi

for b in $KUBE_BINS etcd helm; do
  has_version "$b" || { log "$DEST/$b does not report the wanted version after building"; exit 1; }
done
echo "$DEST"
