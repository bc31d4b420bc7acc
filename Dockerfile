# The Paddock image: paddock-server, paddock-sidecar, paddock-operator and the paddock CLI in
# one image; each pod names the binary it runs (the operator and the chart set `command`).
#
#   docker build -t paddock:0.1.0 .        (or: podman build / buildah bud)
#
# `make images` builds the same image without a container engine (images/build.sh): the same
# paths, user and entrypoint, with the libraries copied from the build machine instead of a
# base image.

# The build stage: Debian bookworm, as the machines Paddock is developed and tested on.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# RocksDB's C++ is compiled by librocksdb-sys here (~15 minutes on 2 cores); the cache mounts
# keep it and the crates between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p paddock-server -p paddock-sidecar -p paddock-operator \
        --bin paddock-server --bin paddock-sidecar --bin paddock --bin paddock-operator \
    && mkdir -p /out \
    && cp target/release/paddock-server target/release/paddock-sidecar target/release/paddock \
        target/release/paddock-operator /out/

# The runtime stage: glibc, libstdc++ and the CA bundle, nothing else the binaries need.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --shell /sbin/nologin nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/paddock-server"]
LABEL org.opencontainers.image.title=paddock org.opencontainers.image.version=0.1.0
