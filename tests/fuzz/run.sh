#!/usr/bin/env bash
# Bounded coverage-guided fuzzing (libFuzzer via cargo fuzz) of every target over the checked-in
# corpus: FUZZ_SECONDS each (default 60). New inputs go to a scratch directory; a crash fails the
# run and leaves its input under tests/fuzz/artifacts/<target>/ (add it to the corpus with the fix).
# Prints executions per target. cargo fuzz passes -Z flags: this machine has only the stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets it accept them.
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-60}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz --version 0.13.1
targets=(envfile config issuer manifest deployed_unit)
cargo fuzz build --fuzz-dir . >&2
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
printf '%-14s %12s %10s %s\n' target executions exec/s corpus
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "corpus/$t"
  log="$scratch/$t.log"
  if ! cargo fuzz run --fuzz-dir . "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed; the input is under tests/fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  rate="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
  printf '%-14s %12s %10s %s\n' "$t" "$execs" "$rate" "$(ls "corpus/$t" | wc -l) seeds + $(ls "$scratch/$t" | wc -l) found"
done
