#!/usr/bin/env bash
# Build the .deb from the shared release binary (build-binary.sh: glibc <= 2.31, man pages,
# completions) with cargo-deb. Reproducible: timestamps come from the last commit, paths are
# remapped. Prints the path of the package on its last line.
#   build-deb.sh [--deb-version V]
# Needs: cargo-deb, cargo-zigbuild, ziglang (installed by tests/harness/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
deb_args=()
if [ "${1:-}" = "--deb-version" ]; then deb_args=(--deb-version "$2"); fi
# shellcheck source=packaging/build-binary.sh
. packaging/build-binary.sh
SOURCE_DATE_EPOCH="$epoch" cargo deb --locked -p agentkeys-hostd --no-build --target "$target" "${deb_args[@]}" --output "$PWD/target/debian/" >&2
ls -t "$PWD"/target/debian/agentkeys-hostd_*_amd64.deb | head -1
