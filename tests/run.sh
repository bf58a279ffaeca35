#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format, lint and every test,
# including the real-systemd container tests. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/harness/prereqs.sh
# The container tests boot cached rootfs images (each built once, ~75 s; rebuilt when missing):
# Debian 12, and for the release matrix (tests/platforms.rs) Debian 11, Debian 13 and Debian 12
# with Amazon Linux 2023's nginx layout. Built in the background while the lint and builds run.
# Each background job runs in its own process group; all are stopped if this script exits early.
background=()
trap 'for g in "${background[@]}"; do kill -- -"$g" 2>/dev/null || true; done; rm -f "${rootfs_log:-}" "${fuzz_log:-}"' EXIT
rootfs_log=$(mktemp)
setsid bash -c './tests/harness/rootfs.sh bookworm && ./tests/harness/rootfs.sh al2023-layout' >"$rootfs_log" 2>&1 &
background+=($!)
setsid ./tests/harness/rootfs.sh bullseye >>"$rootfs_log" 2>&1 &
background+=($!)
setsid ./tests/harness/rootfs.sh trixie >>"$rootfs_log" 2>&1 &
background+=($!)
# Build tools for the package (cargo-deb, cargo-zigbuild + ziglang), pinned, installed when missing.
./tests/harness/tools.sh
# cfn-lint, moto and sslyze (pinned, from PyPI) in their own virtual environment, for the cloud and TLS tests.
./tests/harness/cloud-tools.sh >/dev/null
# podman with private state and two local base images for the Dockerfile test (made once, ~2 min).
./tests/harness/podman.sh >/dev/null

features=(--features agentkeys-hostd/failpoints)
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked --workspace --all-targets "${features[@]}" -- -D warnings
cargo build --locked -p agentkeys-standin
# The stand-in for glibc 2.31, which the release matrix runs on every release it boots.
AGENTKEYS_STANDIN_PORTABLE="$(./tests/harness/standin-portable.sh | tail -1)"
export AGENTKEYS_STANDIN_PORTABLE
# The .deb (binary for glibc <= 2.31) and a rebuilt one for the upgrade test.
AGENTKEYS_DEB="$(./packaging/build-deb.sh | tail -1)"
AGENTKEYS_DEB_UPGRADE="$(./packaging/build-deb.sh --deb-version 0.1.0-2 | tail -1)"
# The .rpm (Amazon Linux 2023) from the first .deb's files: the same binary, byte for byte.
AGENTKEYS_RPM="$(./packaging/build-rpm.sh "$AGENTKEYS_DEB" | tail -1)"
export AGENTKEYS_DEB AGENTKEYS_DEB_UPGRADE AGENTKEYS_RPM
# The fuzz targets' instrumented release build (its own workspace and target directory) runs
# beside the tests at the lowest CPU priority: the container tests leave the CPU idle for minutes.
fuzz_log=$(mktemp)
setsid nice -n 19 ./tests/fuzz/run.sh --build-only >"$fuzz_log" 2>&1 &
fuzz_build=$!
for job in "${background[@]}"; do
  wait "$job" || { cat "$rootfs_log" >&2; echo "building a test rootfs failed" >&2; exit 1; }
done
background=("$fuzz_build")
cargo test --locked --workspace --all-targets "${features[@]}"
wait "$fuzz_build" || { tail -40 "$fuzz_log" >&2; echo "the fuzz build failed" >&2; exit 1; }
./tests/fuzz/run.sh
