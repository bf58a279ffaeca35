#!/usr/bin/env bash
# The main job on an embedded default: boot a throwaway host with real systemd as PID 1 (a cached
# Debian rootfs in systemd-nspawn, stand-in service binaries) and a local ACME CA (Pebble and its
# DNS, inside the host's private network), converge it with `agentkeys-hostd reconcile`, print
# `status` and the OIDC helper, show that a re-run changes nothing and that a cross-wired re-deploy
# is refused. Everything is removed at the end.
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

# Under load nspawn's first child can be a short-lived helper: find the leader again on every poll
# until systemd inside answers (at most 240 s).
leader= state=
inside() { nsenter -t "$leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
for _ in $(seq 1 2400); do
  leader=$(cat /proc/"$nspawn"/task/*/children 2>/dev/null | tr -s ' ' '\n' | head -n 1)
  if [ -n "$leader" ]; then
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
  fi
  kill -0 "$nspawn" 2>/dev/null || { echo "systemd-nspawn exited while booting" >&2; exit 1; }
  sleep 0.1
done
case $state in running|degraded) ;; *) echo "the container did not reach running within 240 s" >&2; exit 1 ;; esac
echo "== throwaway host booted (systemd: $state)"

root=/proc/$leader/root
cp target/debug/agentkeys-hostd "$root/usr/bin/agentkeys-hostd"
target/debug/agentkeys-standin install "$root/usr/local/bin"
mkdir -p "$root/etc/agentkeys/hostd.d" "$root/usr/local/lib/agentkeys-test"
cp packaging/examples/hostd.toml "$root/etc/agentkeys/hostd.toml"

# The local CA of the test image (packaging/container): Pebble's API certificate made here (the
# rootfs has no openssl), Pebble and its DNS as the image's two units, hostd pointed at them.
cp packaging/container/50-local-ca.toml "$root/etc/agentkeys/hostd.d/"
cp packaging/container/local-ca.sh packaging/container/make-test-ca.sh "$root/usr/local/lib/agentkeys-test/"
cp packaging/container/agentkeys-test-dns.service packaging/container/agentkeys-test-ca.service "$root/etc/systemd/system/"
packaging/container/make-test-ca.sh "$root/etc/agentkeys-test-ca"
cp /usr/bin/pebble /usr/bin/pebble-challtestsrv "$root/usr/bin/"
inside systemctl daemon-reload
inside systemctl start agentkeys-test-ca.service
inside bash -c 'for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14000) 2>/dev/null && exit 0; sleep 0.1; done; exit 1'
echo "== local ACME CA (Pebble) and DNS (challtestsrv) running inside the host"

out=$(mktemp -d /tmp/agentkeys-demo-out.XXXXXX)
trap 'cleanup; rm -rf "$out"' EXIT
echo; echo "== agentkeys-hostd reconcile --ci --slot 2 --zone example.org --account-id 123456789012 --json"
inside agentkeys-hostd reconcile --ci --slot 2 --zone example.org --account-id 123456789012 --json >"$out/run.txt"
head -n 1 "$out/run.txt"
grep -E '^(done: (start|mint|wait|daemon|enable|reload|prove)|changed|converged|note)' "$out/run.txt"
echo; echo "== agentkeys-hostd status"
inside agentkeys-hostd status
echo; echo "== agentkeys-hostd oidc (thumbprint computed from the served chain)"
inside agentkeys-hostd oidc
echo; echo "== a second, flagless run (identity read back from the deployed broker unit)"
inside agentkeys-hostd reconcile | tail -n 1
echo; echo "== a cross-wired re-deploy (--base on this test-slot-2 host) is refused"
set +e; inside agentkeys-hostd reconcile --base; code=$?; set -e
echo "exit code: $code"
echo; echo "== the daemon: hostd's own unit (Type=notify), READY after its first observe"
cp units/agentkeys-hostd.service "$root/etc/systemd/system/"
inside systemctl daemon-reload
inside systemctl start agentkeys-hostd
inside systemctl show -p ActiveState -p StatusText agentkeys-hostd
for _ in $(seq 100); do grep -q '"start": 1' "$root/run/agentkeys-hostd/daemon.json" 2>/dev/null && break; sleep 0.1; done
inside agentkeys-hostd status | sed -n '/^daemon:/,$p'
echo; echo "== agentkeys-hostd doctor"
inside agentkeys-hostd doctor
inside systemctl stop agentkeys-hostd
