# syntax=docker/dockerfile:1
# One image with the three binaries: wallet-write-node, wallet-read-node, walletctl.
#   docker build -t wallet-ledger:0.1.0 .
# Built with the release profile (full optimisation; the CI profile is `dev`, tuned for
# build time) and with OpenTelemetry trace export (the `otel` features; it stays off until a
# node's `otlp_endpoint` is set). charts/tests/test_dockerfile.py checks that this build
# command matches CI's.

# --- build: Rust toolchain on Debian bookworm, the same glibc as the runtime image.
FROM docker.io/library/rust:1.95-bookworm AS build
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and RocksDB's C++ build across image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --workspace --release --locked --bins --features write-node/otel,read-node/otel \
 && mkdir -p /out \
 && cp target/release/wallet-write-node target/release/wallet-read-node target/release/walletctl /out/

# --- runtime: glibc + libstdc++ (RocksDB is C++), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/wallet-write-node /out/wallet-read-node /out/walletctl /usr/local/bin/
# The distroless "nonroot" user; numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 50051 50061
ENTRYPOINT ["/usr/local/bin/walletctl"]
CMD ["--help"]
