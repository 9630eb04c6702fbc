#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz + libFuzzer with AddressSanitizer on
# the pinned stable toolchain through RUSTC_BOOTSTRAP=1) for a fixed number of
# executions and prints, per target, executions, coverage, corpus size and crashes.
#
#   scripts/fuzz.sh                 full: 10,000,000 executions per request-side target,
#                                   1,000,000 for the others (hours on 2 cores)
#   scripts/fuzz.sh --smoke         CI: every seed and regression input through every
#                                   target's properties as a plain `cargo test`
#                                   (control-xds/tests/fuzz_seeds.rs), no cargo-fuzz
#   scripts/fuzz.sh --smoke-fuzz    every target under libFuzzer for 12 s
#   scripts/fuzz.sh --runs N T...   N executions of the named targets
#   scripts/fuzz.sh --replay        libFuzzer replays the seeds and the corpus (no new inputs)
#   --sanitizer none|address        with any mode but --smoke (default address). `none` runs the
#                                   same targets and properties 2-4x faster: the code under test
#                                   is safe Rust (the only `unsafe` is the filter's host glue,
#                                   which no target links), so AddressSanitizer finds nothing a
#                                   panic or a property check would not; BENCHMARKS.md says which
#                                   runs used which.
#
# Why CI does not run libFuzzer: on the 2-core machine of 2026-11-22, installing
# cargo-fuzz took 48 s and the first AddressSanitizer build of the targets (the
# control plane's tonic/envoy-types included) far more than the 2-3 minutes CI
# has for this (BENCHMARKS.md, "Fuzzing"); the replay reuses the test build.
#
# Inputs: fuzz/seeds/<target>/ (in the repository, from fuzz/make_seeds.py) and
# fuzz/corpus/<target>/ (what runs found; not in the repository). A crash is saved
# under fuzz/artifacts/<target>/ and the script exits 1; every crash fixed becomes
# a regression test next to the code it concerns.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUEST_SIDE=(path request internal jwt explain_vs_filter)
OTHERS=(plugin_config resources api_bodies)
mode=full runs="" sanitizer=address
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) mode=replay-test ;;
    --smoke-fuzz) mode=smoke ;;
    --replay) mode=replay ;;
    --runs) runs="$2"; shift ;;
    --sanitizer) sanitizer="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${REQUEST_SIDE[@]}" "${OTHERS[@]}")

if [[ $mode == replay-test ]]; then
  start=$(date +%s)
  log=$(mktemp)
  set +e
  cargo test -p switchyard --test fuzz_seeds -- --nocapture >"$log" 2>&1
  rc=$?
  set -e
  grep -E 'inputs replayed|test result' "$log" || true
  [[ $rc == 0 ]] || grep -B1 -A3 -m1 panicked "$log" || tail -20 "$log"
  rm -f "$log"
  echo "== fuzz seed replay: exit $rc in $(( $(date +%s) - start )) s"
  exit "$rc"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
start=$(date +%s)
echo "== building the fuzz targets (sanitizer: $sanitizer, debug assertions)"
(cd fuzz && nice -n 10 cargo fuzz build --release --debug-assertions --sanitizer "$sanitizer")
echo "   built in $(( $(date +%s) - start )) s"

status=0
printf '\n%-18s %12s %8s %8s %8s %8s  %s\n' target executions exec/s cov features corpus crashes
for t in "${targets[@]}"; do
  is_request_side=0
  for r in "${REQUEST_SIDE[@]}"; do [[ $r == "$t" ]] && is_request_side=1; done
  case "$mode" in
    smoke) limit=(-max_total_time=12) ;;
    replay) limit=(-runs=0) ;;
    full)
      n=${runs:-$([[ $is_request_side == 1 ]] && echo 10000000 || echo 1000000)}
      limit=(-runs="$n") ;;
  esac
  [[ -n "$runs" && $mode != full ]] && limit=(-runs="$runs")
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  set +e
  (cd fuzz && nice -n 10 cargo fuzz run --release --debug-assertions --sanitizer "$sanitizer" "$t" \
      "corpus/$t" "seeds/$t" -- "${limit[@]}" -max_len=16384 -timeout=10 \
      -print_final_stats=1 -close_fd_mask=3) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  printf '%-18s %12s %8s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$crashes"
  if [[ $rc != 0 || $crashes != 0 ]]; then
    status=1
    echo "   $t failed (exit $rc); log: $log" >&2
    grep -m3 -E 'panicked|ERROR: AddressSanitizer|SUMMARY' "$log" >&2 || tail -5 "$log" >&2
  fi
done
echo "== done in $(( $(date +%s) - start )) s"
exit $status
