#!/usr/bin/env bash
# Build the stand-in fixture for glibc <= 2.31 (cargo-zigbuild, as the package's binary), so the
# platform matrix can run it on every release it boots, Debian 11 included; print its path.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="$PWD/target/portable"
cargo zigbuild --locked --release -p agentkeys-standin --target x86_64-unknown-linux-gnu.2.31 >&2
echo "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/agentkeys-standin"
