# agentkeys-hostd: the .deb, built reproducibly, and a throwaway test host that boots systemd as
# PID 1 with nginx, the package installed, stand-in services and a local ACME CA (Pebble), in
# which `agentkeys-hostd reconcile` converges.
#
#   podman build --format docker --target package -o out .   # out/agentkeys-hostd_<version>_amd64.deb
#   podman build --format docker -t agentkeys-hostd-test .   # the test host (the last stage)
#   podman run -d --systemd=always --network=none --name hostd-test agentkeys-hostd-test
#   podman exec hostd-test systemctl is-system-running --wait
#   podman exec hostd-test agentkeys-hostd reconcile --ci --slot 2 --zone example.org --account-id 123456789012
#
# The .deb is the same, byte for byte, as packaging/build-deb.sh's on a host with the same
# toolchain and SOURCE_DATE_EPOCH (paths are remapped; the binary targets glibc 2.31 through zig).
# The test suite (tests/container_image.rs) builds the test-host stage from the .deb it already
# built, given as the deb stage's output: `--build-context deb=DIR` (DIR/out/ holds the .deb and
# agentkeys-standin), so the release is compiled once; it passes local base images as RUST_IMAGE
# and BASE (the defaults are the public images).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG BASE=docker.io/library/debian:bookworm

FROM ${RUST_IMAGE} AS deb
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The package's build tools at the versions tests/harness/tools.sh pins, kept when present:
# dpkg-dev (cargo-deb's dpkg tools), the ziglang wheel, cargo-deb and cargo-zigbuild.
# hadolint ignore=DL3008
RUN need=(); command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev); \
    python3 -m ziglang version >/dev/null 2>&1 || need+=(python3-pip); \
    if ((${#need[@]})); then \
      apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}" && rm -rf /var/lib/apt/lists/*; \
    fi \
 && (python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install --no-cache-dir --break-system-packages ziglang==0.17.1) \
 && (cargo-deb --version 2>/dev/null | grep -q 3.8.0 || cargo install --locked --quiet cargo-deb --version 3.8.0) \
 && (cargo-zigbuild --version 2>/dev/null | grep -q 0.24.1 || cargo install --locked --quiet cargo-zigbuild --version 0.24.1)
WORKDIR /src
COPY . .
# Package timestamps: pass the last commit's time (git log -1 --format=%ct) for the same bytes as
# a host build; the context has no git history.
ARG SOURCE_DATE_EPOCH=
# The crate registry and the target directory are cache mounts: kept between builds on one machine,
# never in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    deb=$(packaging/build-deb.sh | tail -n 1) \
 && cargo build --locked --release -p agentkeys-standin \
 && mkdir -p /out \
 && cp "$deb" /out/ \
 && cp target/release/agentkeys-standin /out/ \
 && sha256sum /out/*.deb

FROM scratch AS package
COPY --from=deb /out/*.deb /

FROM ${BASE} AS test-host
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=deb /out/ /tmp/agentkeys/
# systemd, nginx and the package (its Depends resolved by apt), Pebble for the local CA; the
# stand-in fixture under every managed service's binary name.
# hadolint ignore=DL3008
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      systemd systemd-sysv dbus nginx-light pebble openssl ca-certificates procps iproute2 \
      /tmp/agentkeys/agentkeys-hostd_*_amd64.deb \
 && rm -rf /var/lib/apt/lists/* \
 && /tmp/agentkeys/agentkeys-standin install /usr/local/bin \
 && rm -rf /tmp/agentkeys \
 && useradd --create-home --shell /bin/bash ubuntu \
 && systemctl mask console-getty.service getty@tty1.service systemd-logind.service \
 && : >/etc/machine-id
COPY packaging/examples/hostd.toml /etc/agentkeys/hostd.d/40-example-stack.toml
COPY packaging/container/50-local-ca.toml /etc/agentkeys/hostd.d/
COPY packaging/container/local-ca.sh packaging/container/make-test-ca.sh /usr/local/lib/agentkeys-test/
COPY packaging/container/agentkeys-test-dns.service packaging/container/agentkeys-test-ca.service /etc/systemd/system/
RUN systemctl enable agentkeys-test-dns.service agentkeys-test-ca.service
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
