#!/usr/bin/env bash
# Run the converge benchmark with release builds of hostd and the stand-in (prints its figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
./tests/harness/rootfs.sh >/dev/null
cargo build --locked --release -p agentkeys-standin
cargo bench --locked -p agentkeys-hostd --bench converge --bench release_switch --bench daemon_idle --bench acme_orders
