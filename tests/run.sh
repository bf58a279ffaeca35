#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format, lint and every test.
# Run as root on Debian 12 (the fake-root tests create files owned by other users).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if ((${#need[@]})); then
  # Keep package scripts from starting services on this machine while installing.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}" ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}"; }
fi

# The real-systemd container tests boot a cached Debian rootfs (built once, ~75 s).
./tests/harness/rootfs.sh >/dev/null

features=(--features agentkeys-hostd/failpoints)
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets "${features[@]}" -- -D warnings
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo build --locked -p agentkeys-standin
cargo test --locked --workspace --all-targets "${features[@]}"
