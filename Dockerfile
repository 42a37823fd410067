# syntax=docker/dockerfile:1
#
# The kuberay-operator image:  docker build -t kuberay-operator:v1.7.0-rs .
# Needs BuildKit (the default builder of current Docker) for the cache mounts.

ARG RUST_IMAGE=rust:1.95-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Only what the build reads; the cargo registry and the target directory are
# cached between builds.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kuberay-operator --bin kuberay-operator \
 && install -m 0755 target/release/kuberay-operator /kuberay-operator

# Same Debian release as the builder, so the binary finds the glibc it was
# linked against. Nothing else is installed: the operator needs only libc and
# the CA bundle (for API servers reached through a kubeconfig).
FROM ${RUNTIME_IMAGE}
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /kuberay-operator /kuberay-operator
LABEL org.opencontainers.image.title="kuberay-operator" \
      org.opencontainers.image.description="KubeRay operator (Rust implementation)" \
      org.opencontainers.image.version="v1.7.0-rs" \
      org.opencontainers.image.licenses="Apache-2.0"
# Not root; numeric, so Kubernetes can check runAsNonRoot.
USER 65532:65532
# Metrics (/metrics) and health (/healthz, /readyz).
EXPOSE 8080 8082
ENTRYPOINT ["/kuberay-operator"]
