#!/usr/bin/env bash
# The cold-bootstrap stress loop (not part of CI, which runs 5): N cold bootstraps in a row
# (default 50) beside a parallel CPU load — a debug build of hostd from scratch, over and over, in
# a scratch target directory, at normal priority. Pebble in its default, unforgiving mode, or
# with AGENTKEYS_PEBBLE=forgiving in the demo's (validation at once: the reload race most
# exposed). AGENTKEYS_HOSTD_BIN runs another build of hostd (e.g. one before a fix).
# Prints each run and the totals: runs, failed, unauthorized, reconcile median/max.
#   tests/bench/stress.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-50}
./tests/harness/rootfs.sh >/dev/null
cargo build --locked -p agentkeys-standin
load_dir=$(mktemp -d)
setsid bash -c "while :; do CARGO_TARGET_DIR='$load_dir' cargo build -q --locked -p agentkeys-hostd >/dev/null 2>&1; rm -rf '$load_dir'/debug; done" &
load=$!
trap 'kill -- -"$load" 2>/dev/null || true; rm -rf "$load_dir"' EXIT
echo "CPU load: a build of hostd, repeated (process group $load)" >&2
AGENTKEYS_BOOTSTRAPS=$n cargo test --locked -p agentkeys-hostd --test cold_bootstrap \
  cold_bootstraps_against_an_unforgiving_ca -- --nocapture
