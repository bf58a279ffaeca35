#!/usr/bin/env bash
# Prepare podman to build and boot the Dockerfile here, without a Docker engine or a registry:
# podman and hadolint installed if missing (prereqs.sh, tools.sh), all podman state in a private
# directory (runc, cgroupfs, no CNI plugins so nothing can create a bridge), and two local base
# images, made once and cached:
#   localhost/debian:bookworm          debootstrap --variant=minbase, imported
#   localhost/agentkeys-rust:<version> (with --rust-image) that image + this machine's Rust toolchain, cargo-deb,
#                                      cargo-zigbuild, the ziglang wheel and its CA store
# Prints the environment and build arguments the callers use, one KEY=VALUE per line.
# The mirror is read from this machine's apt sources, never written into the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${AGENTKEYS_TEST_CACHE:-/var/tmp/agentkeys-hostd-test}
state=$cache/podman-v1
# Runtime state on /run (gone at reboot, as podman expects), one directory per cache.
run=/run/agentkeys-hostd-test-podman-$(printf '%s' "$cache" | sha256sum | cut -c1-8)
# podman, runc, debootstrap & co. (Debian packages) and the pinned tools incl. hadolint.
./tests/harness/prereqs.sh >&2
./tests/harness/tools.sh >&2

# Limits the container may keep without CAP_SYS_RESOURCE (this machine has none to raise them; its
# own nproc limit is refused too, 16384 is not). Passed on each command as well: a --ulimit there
# replaces the configured defaults instead of adding to them.
limits=("nofile=$(ulimit -Hn):$(ulimit -Hn)" "nproc=16384:16384")
ulimits=()
for l in "${limits[@]}"; do ulimits+=(--ulimit "$l"); done
# Private configuration: nothing in the machine's /etc/containers is read or changed.
mkdir -p "$state/storage" "$state/no-cni" "$state/tmp"
# Work directories of this run go when it ends, also on failure.
work=()
trap 'rm -rf "${work[@]}"' EXIT
cat >"$state/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$run/storage"
EOF
cat >"$state/containers.conf" <<EOF
[containers]
default_ulimits = [$(printf '"%s", ' "${limits[@]}" | sed 's/, $//')]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$state/no-cni"]
network_config_dir = "$state/no-cni"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$state/events.log"
tmp_dir = "$run/libpod"
image_parallel_copies = 2
EOF
export CONTAINERS_STORAGE_CONF=$state/storage.conf CONTAINERS_CONF=$state/containers.conf
export TMPDIR=$state/tmp

mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^https?://' || true)
[ -n "$mirror" ] || mirror=$(awk '$1=="deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)

base=localhost/debian:bookworm
if ! podman image exists "$base"; then
  [ -n "$mirror" ] || { echo "no Debian mirror found in this machine's apt sources" >&2; exit 1; }
  dir=$(mktemp -d "$state/tmp/base.XXXXXX") && work+=("$dir")
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >&2
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | podman import -q - "$base" >&2
fi

# The builder: the official rust image's layout (RUSTUP_HOME-less: the toolchain itself under
# /usr/local/rust, cargo tools under /usr/local/cargo/bin), from what this machine already has.
toolchain=$(rustc --print sysroot)
rust_version=$(rustc --version | cut -d' ' -f2)
deb_version=$(cargo-deb --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)
zb_version=$(cargo-zigbuild --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)
recipe=$(sha256sum tests/harness/rust-builder.Containerfile | cut -c1-8)
rust_image=localhost/agentkeys-rust:$rust_version-deb$deb_version-zb$zb_version-$recipe
# Made only when asked (`podman.sh --rust-image`): the suite's test-host build takes the suite's
# own .deb; only the package stage's from-source build (an ignored test) needs the builder.
if [ "${1:-}" = --rust-image ] && ! podman image exists "$rust_image"; then
  ctx=$(mktemp -d "$state/tmp/rust.XXXXXX") && work+=("$ctx")
  mkdir -p "$ctx/rust" "$ctx/cargo-bin" "$ctx/ziglang"
  cp -a "$toolchain/bin" "$toolchain/lib" "$toolchain/libexec" "$ctx/rust/"
  cp "$(command -v cargo-deb)" "$(command -v cargo-zigbuild)" "$ctx/cargo-bin/"
  cp -a "$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/." "$ctx/ziglang/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  podman build -q --network=host --pull=never "${ulimits[@]}" --build-arg BASE="$base" -t "$rust_image" \
    -f tests/harness/rust-builder.Containerfile "$ctx" >&2
fi

echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "TMPDIR=$TMPDIR"
echo "ULIMITS=${ulimits[*]}"
echo "BASE=$base"
echo "RUST_IMAGE=$rust_image"
