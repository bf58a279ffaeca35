# Placeholder, not built in CI: builds the agentkeys-hostd binary only. The reproducible .deb stage
# and the systemd-PID-1 test image (built and booted with podman in the tests) are open work; the
# package itself is built and tested by packaging/build-deb.sh and tests/deb_package.rs.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin agentkeys-hostd
