#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format, lint and every test,
# including the real-systemd container tests. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/harness/prereqs.sh
# The container tests boot a cached Debian rootfs (built once, ~75 s; rebuilt when missing).
./tests/harness/rootfs.sh >/dev/null

features=(--features agentkeys-hostd/failpoints)
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo clippy --locked --workspace --all-targets "${features[@]}" -- -D warnings
cargo build --locked -p agentkeys-standin
cargo test --locked --workspace --all-targets "${features[@]}"
