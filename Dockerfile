# syntax=docker/dockerfile:1
# shoal's container image: a static binary on an empty base.
#
#   docker build -t shoal:0.1.0 .
#
# The runtime stage holds /shoal and a CA bundle (for https origins), runs as
# the numeric non-root user 65532 and writes nothing, so it runs with a
# read-only root filesystem. .ci/chart-checks.sh builds the runtime stage
# from a host-built binary with buildah and runs it under podman as the
# chart runs it.

FROM rust:1-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# glibc linked statically (crt-static): the binary needs nothing from the
# image. DNS is hickory's own resolver, TLS is rustls: no NSS, no OpenSSL.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(rustc -vV | sed -n 's/^host: //p')" \
    && RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target "$target" \
    && mkdir -p /rootfs/etc/ssl/certs \
    && cp "target/$target/release/shoal" /rootfs/shoal \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && /rootfs/shoal --version

FROM scratch
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="A distributed read-through cache for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# service (apps), peer, gossip, admin (/metrics, /healthz, /readyz)
EXPOSE 3000 8000 7946/udp 9090
ENTRYPOINT ["/shoal"]
