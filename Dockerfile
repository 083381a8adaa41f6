# The shoes-scaleset container image: the static binary FROM scratch, run as
# an unprivileged user (nonroot, 65532:65532). Building it pulls no base
# image: the runtime has only the binary, which carries its own CA roots
# (golang.org/x/crypto/x509roots/fallback, used when the system has none),
# an /etc/passwd, and the directories it writes to. Three targets share the
# runtime and differ in where the binary comes from:
#
#   --target=local     bin/shoes-scaleset, built beforehand with `make build`
#                      (CGO_ENABLED=0): needs nothing but the Go module proxy
#   --target=release   the binary goreleaser built, from its context
#                      ($TARGETPLATFORM/shoes-scaleset); .goreleaser.yaml's
#                      dockers_v2 uses it
#   (the last stage)   built here from the source tree, in the golang image
#                      (which is pulled)
#
# Needs BuildKit (the default builder since Docker 23), for RUN --mount and
# the automatic platform arguments. docs/packaging.md shows
# how to run it. A plugin linked against glibc needs a libc in the image:
# --build-arg BASE_IMAGE=gcr.io/distroless/base-debian12:nonroot (pulled).
ARG BASE_IMAGE=scratch
ARG GO_VERSION=1.26

FROM ${BASE_IMAGE} AS runtime
COPY packaging/image/rootfs/ /
# The state file and the plugin download cache must be writable by nonroot,
# and a named volume mounted there starts with the ownership of the image's
# directory. go-plugin puts the socket between shoes-scaleset and its plugin
# processes in the temporary directory, which only nonroot uses here.
COPY --chown=65532:65532 packaging/image/empty/ /var/lib/shoes-scaleset/
COPY --chown=65532:65532 packaging/image/empty/ /var/cache/shoes-scaleset/
COPY --chown=65532:65532 packaging/image/empty/ /tmp/
# The same state file path as the packages. The API listens on every address
# of the container, so that a published port reaches it; publish it on the
# host's loopback only (-p 127.0.0.1:9780:9780): it has no TLS.
ENV SHOES_SCALESET_STATE_FILE=/var/lib/shoes-scaleset/state.db \
    SHOES_SCALESET_LISTEN=0.0.0.0:9780 \
    XDG_CACHE_HOME=/var/cache/shoes-scaleset \
    HOME=/var/lib/shoes-scaleset
USER 65532:65532
EXPOSE 9780
ENTRYPOINT ["/usr/bin/shoes-scaleset"]
CMD ["run"]

# make build && docker build --target=local -t shoes-scaleset .
FROM runtime AS local
COPY bin/shoes-scaleset /usr/bin/shoes-scaleset

# goreleaser's image: its context holds linux/amd64/shoes-scaleset and
# linux/arm64/shoes-scaleset.
FROM runtime AS release
ARG TARGETPLATFORM
COPY ${TARGETPLATFORM}/shoes-scaleset /usr/bin/shoes-scaleset

# From source. Compiled on the build machine's platform for the target's:
# CGO_ENABLED=0 cross-compiles without an emulator.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
# The version `shoes-scaleset version` prints: --build-arg VERSION=v1.2.3.
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/shoes-scaleset/shoes-scaleset/internal/buildinfo.version=${VERSION}" \
      -o /out/shoes-scaleset ./cmd/shoes-scaleset

# The default target.
FROM runtime
COPY --from=build /out/shoes-scaleset /usr/bin/shoes-scaleset
