#!/usr/bin/env bash
# Build (once) a Debian rootfs the real-systemd container tests boot, and print its path.
#   rootfs.sh [bookworm|bullseye|trixie|al2023-layout]   (default: bookworm)
# bullseye (systemd 247, nginx 1.18) and trixie (systemd 257, nginx 1.26) bracket the releases
# hostd supports; al2023-layout is the bookworm rootfs with nginx set up the way Amazon Linux 2023
# ships it (only conf.d/*.conf included, worker user nginx, no sites-* directories) and ec2-user as
# the EC2 default user. Cached under $AGENTKEYS_TEST_CACHE (default /var/tmp/agentkeys-hostd-test);
# rebuilt when missing. The mirror is read from this machine's apt sources, never written into the
# repository.
set -euo pipefail
release=${1:-bookworm}
cache=${AGENTKEYS_TEST_CACHE:-/var/tmp/agentkeys-hostd-test}
case "$release" in
  bookworm) rootfs=$cache/rootfs-bookworm-v2 nginx=nginx-light default_user=ubuntu ;;
  bullseye) rootfs=$cache/rootfs-bullseye-v1 nginx=nginx-light default_user=ubuntu ;;
  # trixie has no nginx-light: its nginx package is the one binary.
  trixie) rootfs=$cache/rootfs-trixie-v1 nginx=nginx default_user=ubuntu ;;
  al2023-layout) rootfs=$cache/rootfs-al2023-layout-v1 ;;
  *) echo "rootfs.sh: unknown release '$release' (bookworm, bullseye, trixie or al2023-layout)" >&2; exit 2 ;;
esac
if [ -f "$rootfs/.complete" ]; then echo "$rootfs"; exit 0; fi
mkdir -p "$cache"
rm -rf "$rootfs.tmp"

if [ "$release" = al2023-layout ]; then
  base=$("$0" bookworm)
  cp -a "$base" "$rootfs.tmp"
  rm "$rootfs.tmp/.complete"
  # nginx as Amazon Linux 2023 packages it: one main file that includes conf.d/*.conf only, the
  # worker user nginx, no sites-available/sites-enabled.
  chroot "$rootfs.tmp" useradd --system --no-create-home --home-dir /var/lib/nginx --shell /sbin/nologin nginx
  rm -rf "$rootfs.tmp/etc/nginx/sites-available" "$rootfs.tmp/etc/nginx/sites-enabled"
  cat >"$rootfs.tmp/etc/nginx/nginx.conf" <<'EOF'
user nginx;
worker_processes auto;
error_log /var/log/nginx/error.log notice;
pid /run/nginx.pid;
include /usr/share/nginx/modules/*.conf;
events {
    worker_connections 1024;
}
http {
    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';
    access_log  /var/log/nginx/access.log  main;
    sendfile            on;
    tcp_nopush          on;
    keepalive_timeout   65;
    types_hash_max_size 4096;
    include             /etc/nginx/mime.types;
    default_type        application/octet-stream;
    include /etc/nginx/conf.d/*.conf;
    server {
        listen       80;
        listen       [::]:80;
        server_name  _;
        root         /usr/share/nginx/html;
    }
}
EOF
  mkdir -p "$rootfs.tmp/usr/share/nginx/modules"
  chroot "$rootfs.tmp" chown -R nginx:nginx /var/lib/nginx
  chroot "$rootfs.tmp" userdel --remove ubuntu
  chroot "$rootfs.tmp" useradd --create-home --shell /bin/bash ec2-user
  touch "$rootfs.tmp/.complete"
  mv "$rootfs.tmp" "$rootfs"
  echo "$rootfs"
  exit 0
fi

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

debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,$nginx,iproute2,procps,sudo,openssh-server,ca-certificates \
  "$release" "$rootfs.tmp" "$mirror" >&2
chroot "$rootfs.tmp" apt-get clean
rm -rf "$rootfs.tmp"/var/lib/apt/lists/*
# A fresh machine-id at every boot; no getty on the pipe console.
: >"$rootfs.tmp/etc/machine-id"
chroot "$rootfs.tmp" systemctl mask console-getty.service getty@tty1.service >/dev/null 2>&1 || true
# The EC2 default user, whose authorized_keys the login user is seeded from.
chroot "$rootfs.tmp" useradd --create-home --shell /bin/bash "$default_user"
touch "$rootfs.tmp/.complete"
mv "$rootfs.tmp" "$rootfs"
echo "$rootfs"
