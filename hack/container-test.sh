#!/usr/bin/env bash
# container-test.sh — build the hotswap image with podman and run the
# container e2e tests (e2e/container): image contents, PID 1 swapped by
# `podman kill --signal USR2`, `podman exec CTR /hotswap swap` and
# `podman exec CTR kill -USR2 1` under load, exit code 0 on stop.
#
#   hack/container-test.sh          install podman if needed, then test
#   hack/container-test.sh -v       verbose (prints image size, timings)
#
# Needs root (apt-get, rootful podman). hack/test.sh runs the same tests
# as part of `go test ./...`; this script is for running them alone.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTAINERS_CONF=$(hack/podman-setup.sh)
export CONTAINERS_CONF
exec go test -count=1 -timeout 10m "$@" ./e2e/container
