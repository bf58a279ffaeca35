#!/usr/bin/env bash
# The main job on an embedded default: boot a throwaway host with real systemd as PID 1 (a cached
# Debian rootfs in systemd-nspawn, stand-in service binaries), converge it with
# `agentkeys-hostd reconcile`, print `status`, show that a re-run changes nothing and that a
# cross-wired re-deploy is refused. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/harness/prereqs.sh
rootfs=$(./tests/harness/rootfs.sh)
cargo build --locked -q -p agentkeys-hostd --bin agentkeys-hostd
cargo build --locked -q -p agentkeys-standin

bus=$(mktemp -d /tmp/agentkeys-demo-bus.XXXXXX)
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$rootfs" -b -M "agentkeys-demo-$$" --register=no \
  --keep-unit --private-network --console=pipe --volatile=overlay --bind="$bus:/run/dbus" \
  --system-call-filter=bpf --capability=CAP_BPF </dev/null >/dev/null 2>&1 &
nspawn=$!
cleanup() { kill -TERM "$nspawn" 2>/dev/null; wait "$nspawn" 2>/dev/null; rm -rf "$bus"; }
trap cleanup EXIT

leader=
for _ in $(seq 1 200); do
  leader=$(cat /proc/"$nspawn"/task/*/children 2>/dev/null | tr -s ' ' '\n' | head -n 1)
  [ -n "$leader" ] && break
  sleep 0.05
done
[ -n "$leader" ] || { echo "the container did not start" >&2; exit 1; }
inside() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
for _ in $(seq 1 200); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 0.1
done
echo "== throwaway host booted (systemd: $state)"

root=/proc/$leader/root
cp target/debug/agentkeys-hostd "$root/usr/bin/agentkeys-hostd"
for b in agentkeys-mock-server agentkeys-broker-server agentkeys-worker-audit agentkeys-worker-email \
  agentkeys-worker-creds agentkeys-worker-memory agentkeys-worker-config agentkeys-worker-classify agentkeys-bundler; do
  cp target/debug/agentkeys-standin "$root/usr/local/bin/$b"
done
mkdir -p "$root/etc/agentkeys"
cp packaging/examples/hostd.toml "$root/etc/agentkeys/hostd.toml"

echo; echo "== agentkeys-hostd reconcile --ci --slot 2 --zone example.org --account-id 123456789012 --no-acme"
inside agentkeys-hostd reconcile --ci --slot 2 --zone example.org --account-id 123456789012 --no-acme |
  grep -E '^(done: (start|mint|wait|daemon|enable)|changed|converged|note)'
echo; echo "== agentkeys-hostd status"
inside agentkeys-hostd status
echo; echo "== a second, flagless run (identity read back from the deployed broker unit)"
inside agentkeys-hostd reconcile --no-acme | tail -n 1
echo; echo "== a cross-wired re-deploy (--base on this test-slot-2 host) is refused"
set +e; inside agentkeys-hostd reconcile --base --no-acme; code=$?; set -e
echo "exit code: $code"
