#!/usr/bin/env bash
# Build (once) the Debian rootfs the real-systemd container tests boot, and print its path.
# Cached under $AGENTKEYS_TEST_CACHE (default /var/tmp/agentkeys-hostd-test); rebuilt when missing.
# The mirror is read from this machine's apt sources, never written into the repository.
set -euo pipefail
cache=${AGENTKEYS_TEST_CACHE:-/var/tmp/agentkeys-hostd-test}
rootfs=$cache/rootfs-bookworm-v2
if [ -f "$rootfs/.complete" ]; then echo "$rootfs"; exit 0; fi

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends --no-upgrade "${need[@]}" >&2; }
fi

mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^https?://' || true)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "no Debian mirror found in this machine's apt sources" >&2; exit 1; }

rm -rf "$rootfs.tmp"
mkdir -p "$cache"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,nginx-light,iproute2,procps,sudo,openssh-server,ca-certificates \
  bookworm "$rootfs.tmp" "$mirror" >&2
chroot "$rootfs.tmp" apt-get clean
rm -rf "$rootfs.tmp"/var/lib/apt/lists/*
# A fresh machine-id at every boot; no getty on the pipe console.
: >"$rootfs.tmp/etc/machine-id"
chroot "$rootfs.tmp" systemctl mask console-getty.service getty@tty1.service >/dev/null 2>&1 || true
# The EC2 default user, whose authorized_keys the login user is seeded from.
chroot "$rootfs.tmp" useradd --create-home --shell /bin/bash ubuntu
touch "$rootfs.tmp/.complete"
mv "$rootfs.tmp" "$rootfs"
echo "$rootfs"
