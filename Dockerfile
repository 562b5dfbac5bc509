# syntax=docker/dockerfile:1
#
# hotswap image: a static, stripped hotswap as PID 1 in a FROM-scratch image,
# running as 65532:65532, with the built-in example server as the default
# command, so `docker run -p 8080:8080 IMAGE` shows a swap-ready server:
#
#   docker build -t hotswap .
#   docker run -d --name hs -p 127.0.0.1:8080:8080 hotswap
#   curl -s localhost:8080/                 # version, generation, pid
#   docker exec hs kill -USR2 1             # swap by signal (/bin/kill is hotswap)
#   docker exec hs /hotswap swap            # swap and print the outcome
#
# Use it as the base of your own server image (or copy /hotswap out of it):
#
#   FROM ghcr.io/hotswap-dev/hotswap
#   COPY --chown=0:0 server /app/server
#   CMD ["/app/server"]
#
# Machines without a registry (no golang image to pull) build the same final
# stage from a host-built binary: hack/image.sh with hack/Containerfile.prebuilt.
# The final stage below and the one there must stay identical (a test in
# e2e/container checks it).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: one static binary that runs in FROM scratch; -s -w strips
# the symbol table and DWARF; -trimpath keeps build paths out of it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /rootfs/hotswap ./cmd/hotswap
# The rest of the file system, laid out exactly as hack/image.sh does:
#  /bin/kill -> /hotswap  `kubectl exec POD -- kill -USR2 1` works without a
#                         shell or coreutils (hotswap is multi-call)
#  /etc/passwd, /etc/group  name the non-root user 65532 (nonroot)
#  /run/hotswap           control and notify sockets (owned by 65532)
#  /tmp                   1777, for servers that need a scratch dir
RUN set -eu; \
    mkdir -p /rootfs/bin /rootfs/etc /rootfs/run /rootfs/tmp /owned/run/hotswap; \
    ln -s /hotswap /rootfs/bin/kill; \
    printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group; \
    chmod 0755 /rootfs/hotswap /rootfs/run; chmod 1777 /rootfs/tmp

# --- final stage: keep identical to hack/Containerfile.prebuilt ---
FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /owned/run/hotswap/ /run/hotswap/
USER 65532:65532
ENV PATH=/bin:/
EXPOSE 8080
LABEL org.opencontainers.image.title="hotswap" \
      org.opencontainers.image.description="PID-1 entrypoint that hot-swaps the serving process in place" \
      org.opencontainers.image.source="https://github.com/hotswap-dev/hotswap" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/hotswap", "--listen", "http=tcp://:8080", "--"]
CMD ["/hotswap", "serve"]
