#!/usr/bin/env bash
# Build the filter as it ships: `cargo build` for wasm32-wasip1 (release), then
# binaryen's `wasm-opt -Oz` over it, written to the path everyone uses:
#
#   target/wasm32-wasip1/release/switchyard_filter.wasm      (or $CARGO_TARGET_DIR/...)
#
# Usage: scripts/build-wasm.sh [-q]      (-q: quiet cargo)
# Every build of the filter goes through here (scripts/test.sh, scripts/bench.sh,
# scripts/demo.sh, tests/e2e/harness.py), so a user runs the optimized file.
#
# wasm-opt comes from Debian's `binaryen` package; when it is missing and apt is
# usable (root or sudo without a password) it is installed. Otherwise the
# unoptimized file is kept and a warning says so (the filter works either way;
# it is ~25% larger). cargo re-links its own output over ours on every build, so
# the optimized file is also kept beside it, keyed by the checksum of cargo's
# output: unchanged input, no second wasm-opt run (it takes ~20 s).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet=()
[ "${1:-}" = "-q" ] && quiet=(-q)
log() { echo "build-wasm: $*" >&2; }

cargo build "${quiet[@]}" -p switchyard-filter --target wasm32-wasip1 --release

target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/wasm32-wasip1/release/switchyard_filter.wasm"
# cargo's own output (what it hard-links to $out on every build).
raw="$target/wasm32-wasip1/release/deps/switchyard_filter.wasm"
[ -f "$raw" ] || raw="$out"
cache="$target/wasm32-wasip1/release/switchyard_filter.wasm-opt"
stamp="$cache.cksum"

if ! command -v wasm-opt >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
    if [ ${#apt[@]} -gt 0 ]; then
        log "installing binaryen (wasm-opt) from Debian"
        { "${apt[@]}" install -y -qq binaryen || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq binaryen; }; } \
            >/dev/null 2>&1 || true
    fi
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
    log "WARNING: wasm-opt (binaryen) not found and not installable here:"
    log "  $out is NOT size-optimized ($(stat -c %s "$out") bytes)."
    log "  Install binaryen (apt-get install binaryen) and rerun for the shipped size."
    exit 0
fi

want="$(cksum < "$raw" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ -f "$cache" ] && [ "$(cat "$stamp")" = "$want" ]; then
    cp -f "$cache" "$out.opt.tmp" && mv -f "$out.opt.tmp" "$out"
    exit 0
fi
# The features rustc enables by default for wasm32-wasip1 (wasm-opt 108 needs them named).
# `-ocimfs 20`: inline a function that has one caller only when it is small. -Oz's
# default (any size) builds a few huge functions: the file is no smaller and V8 in
# Envoy then takes ~15 MiB more RSS (118.9 MiB → 133.5 unoptimized vs -Oz; 115.3 with
# this flag, small table, one worker: BENCHMARKS.md).
wasm-opt -Oz -ocimfs 20 --strip-debug --strip-producers \
    --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$raw" -o "$cache"
echo "$want" > "$stamp"
cp -f "$cache" "$out.opt.tmp" && mv -f "$out.opt.tmp" "$out"
log "$(stat -c %s "$raw") → $(stat -c %s "$out") bytes (wasm-opt -Oz): $out"
