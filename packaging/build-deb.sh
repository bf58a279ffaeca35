#!/usr/bin/env bash
# Build the .deb: a release binary linked against glibc <= 2.31 (runs on Debian 11 and later,
# Ubuntu 22.04 and Amazon Linux 2023; cargo-zigbuild with the ziglang wheel pins the glibc version), the man pages and shell
# completions generated from the command line, then cargo-deb. Reproducible: timestamps come from
# the last commit, paths are remapped. Prints the path of the package on its last line.
# Needs: cargo-deb, cargo-zigbuild, ziglang (installed by tests/harness/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
deb_args=()
if [ "${1:-}" = "--deb-version" ]; then deb_args=(--deb-version "$2"); fi
target=x86_64-unknown-linux-gnu
glibc=2.31
# Package timestamps from the last commit (only cargo-deb gets it: build scripts that track
# SOURCE_DATE_EPOCH would otherwise rebuild the C dependencies after every commit).
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1764331200)}"
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
export CARGO_TARGET_DIR="${DEB_TARGET_DIR:-$PWD/target/deb-build}"
cargo zigbuild --locked --release -p agentkeys-hostd --bin agentkeys-hostd --target "$target.$glibc" >&2
cargo run -q --locked -p agentkeys-hostd-xtask -- assets "$PWD/target/assets" >&2
SOURCE_DATE_EPOCH="$epoch" cargo deb --locked -p agentkeys-hostd --no-build --target "$target" "${deb_args[@]}" --output "$PWD/target/debian/" >&2
ls -t "$PWD"/target/debian/agentkeys-hostd_*_amd64.deb | head -1
