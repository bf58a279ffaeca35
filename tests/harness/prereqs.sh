#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, if missing, without starting services.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
command -v curl >/dev/null 2>&1 || need+=(curl)
# certbot (Debian's) is the benchmark's point of comparison for issuing certificates.
command -v certbot >/dev/null 2>&1 || need+=(certbot)
# minisign signs release manifests in the signed-release tests (operators and CI use it too).
command -v minisign >/dev/null 2>&1 || need+=(minisign)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v objdump >/dev/null 2>&1 || need+=(binutils)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
# rpm (rpm -qp on the .rpm) and rpmlint (its lint).
command -v rpm >/dev/null 2>&1 || need+=(rpm)
command -v rpmlint >/dev/null 2>&1 || need+=(rpmlint)
# cfn-lint and moto run in a virtual environment (tests/harness/cloud-tools.sh).
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
# podman (no Docker engine here) to build and boot the Dockerfile.
for c in podman:podman buildah:buildah runc:runc fuse-overlayfs:fuse-overlayfs catatonit:catatonit; do
  command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
done
[ -d /usr/lib/cni ] || need+=(containernetworking-plugins)
((${#need[@]})) || exit 0
# Keep package scripts from starting services on this machine while installing.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}" ||
  { apt-get update -q && apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}"; }
