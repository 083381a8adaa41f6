# The shoes-scaleset container image: the static binary on distroless, run as
# an unprivileged user (nonroot, 65532:65532). Two targets share everything
# but where the binary comes from:
#
#   docker build -t shoes-scaleset .    the last stage: built from this source
#                                       tree (needs the Go module proxy only)
#   --target=release                    the binary goreleaser built, from its
#                                       context ($TARGETPLATFORM/shoes-scaleset);
#                                       .goreleaser.yaml's dockers_v2 uses it
#
# Needs BuildKit (the default builder since Docker 23), for RUN --mount and
# the automatic platform arguments. docs/packaging.md shows how to run it.

# distroless/static: CA certificates, tzdata and an /etc/passwd with nonroot,
# no shell and no libc. A plugin linked against glibc needs
# --build-arg BASE_IMAGE=gcr.io/distroless/base-debian12:nonroot instead.
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG GO_VERSION=1.26

FROM ${BASE_IMAGE} AS base

FROM base AS runtime
# The state file and the plugin download cache must be writable by nonroot,
# and a named volume mounted there starts with the ownership of the image's
# directory. distroless has no shell to mkdir and chown with, so both are made
# by copying the base image's empty /home/nonroot.
COPY --from=base --chown=65532:65532 /home/nonroot /var/lib/shoes-scaleset
COPY --from=base --chown=65532:65532 /home/nonroot /var/cache/shoes-scaleset
# The same state file path as the packages. The API listens on every address
# of the container, so that a published port reaches it; publish it on the
# host's loopback only (-p 127.0.0.1:9780:9780): it has no TLS.
ENV SHOES_SCALESET_STATE_FILE=/var/lib/shoes-scaleset/state.db \
    SHOES_SCALESET_LISTEN=0.0.0.0:9780 \
    XDG_CACHE_HOME=/var/cache/shoes-scaleset
USER 65532:65532
EXPOSE 9780
ENTRYPOINT ["/usr/bin/shoes-scaleset"]
CMD ["run"]

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
