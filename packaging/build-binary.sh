#!/usr/bin/env bash
# Sourced by build-deb.sh and build-rpm.sh: the one release binary both packages ship, linked
# against glibc <= 2.31 (runs on Debian 11 and later, Ubuntu 22.04 and Amazon Linux 2023;
# cargo-zigbuild with the ziglang wheel pins the glibc version), and the man pages and shell
# completions generated from the command line. Reproducible: paths are remapped; package
# timestamps come from the last commit (only the packagers get SOURCE_DATE_EPOCH: build scripts
# that track it would otherwise rebuild the C dependencies after every commit). A second call
# with nothing changed rebuilds nothing.
# Sets: target, epoch, CARGO_TARGET_DIR, binary.
# Needs: cargo-zigbuild, ziglang (installed by tests/harness/tools.sh).
target=x86_64-unknown-linux-gnu
glibc=2.31
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1764331200)}"
export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$PWD=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
export CARGO_TARGET_DIR="${DEB_TARGET_DIR:-$PWD/target/deb-build}"
cargo zigbuild --locked --release -p agentkeys-hostd --bin agentkeys-hostd --target "$target.$glibc" >&2
cargo run -q --locked -p agentkeys-hostd-xtask -- assets "$PWD/target/assets" >&2
binary="$CARGO_TARGET_DIR/$target/release/agentkeys-hostd"
