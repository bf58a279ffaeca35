# Placeholder: builds the agentkeys-hostd binary. The .deb stage and the systemd test image land
# with the packaging issue; this file is not yet built in CI.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin agentkeys-hostd
