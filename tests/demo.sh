#!/usr/bin/env bash
# The main job on an embedded default: declare a test-slot-2 host, converge a demo host layout
# under a throwaway root with `agentkeys-hostd reconcile`, show the plan, the result and the tree,
# then prove a second run changes nothing. (systemd and ACME land with later issues.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q --bin agentkeys-hostd
bin=target/debug/agentkeys-hostd
root=$(mktemp -d /tmp/agentkeys-demo.XXXXXX)
mkdir -p "$root/etc/agentkeys"
cp packaging/examples/hostd.toml "$root/etc/agentkeys/hostd.toml"
selectors=(--ci --slot 2 --zone example.org --account-id 123456789012)

echo "== identity"
"$bin" identity --root "$root" "${selectors[@]}"
echo; echo "== plan (reconcile --dry-run --json)"
"$bin" reconcile --root "$root" "${selectors[@]}" --dry-run --json
echo; echo "== converge (reconcile --no-systemd --no-acme --json)"
"$bin" reconcile --root "$root" "${selectors[@]}" --no-systemd --no-acme --json | head -n 1
echo; echo "== the host under $root"
(cd "$root" && find . -path ./etc/agentkeys/hostd.toml -prune -o -print | sort | sed 's#^\./##' | xargs -r stat -c '%A %u:%g %n' 2>/dev/null)
echo; echo "== the broker unit"
sed -n '/^\[Service\]/,/^ExecStart/p' "$root/etc/systemd/system/agentkeys-broker.service"
echo; echo "== second run, flagless: the identity is read back from the deployed unit"
"$bin" reconcile --root "$root" --no-systemd --no-acme | tail -n 1
echo; echo "== a cross-wired re-deploy is refused (exit 3)"
set +e; "$bin" reconcile --root "$root" --base --no-systemd --no-acme; code=$?; set -e
echo "exit code: $code"
rm -rf "$root"
