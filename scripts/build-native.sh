#!/usr/bin/env bash
# Build the native filter (filter/native: an Envoy dynamic module) as it ships:
#
#   target/native/libswitchyard_native.so      (or $CARGO_TARGET_DIR/native/...)
#
# Usage: scripts/build-native.sh [-q]      (-q: quiet cargo)
#
# The profile `native` is the release profile (LTO, one codegen unit, stripped)
# with `panic = "unwind"`: the module runs inside Envoy's process and guards
# every hook with `catch_unwind`, which can only stop a panic that unwinds; with
# the workspace's `panic = "abort"` a panic would take the whole Envoy down.
# The module is built for the machine's own target (Linux x86-64 or aarch64,
# glibc), like the Envoy that loads it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet=()
[ "${1:-}" = "-q" ] && quiet=(-q)

cargo build "${quiet[@]}" -p switchyard-native --profile native

target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/native/libswitchyard_native.so"
echo "build-native: $(stat -c %s "$out") bytes: $out" >&2
