#!/usr/bin/env bash
# Run the hello-world demo: build, install Envoy, start the hello-world upstreams
# (examples/hello-world/upstreams.txt), the control plane `switchyard serve`
# (xDS 127.0.0.1:18000, API 127.0.0.1:18001) with examples/hello-world, and one
# Envoy on envoy/bootstrap-ads.yaml: genesis listener 127.0.0.1:8080, internal
# listener 127.0.0.1:15001 (frontends call backends through it), admin
# 127.0.0.1:9901. Ctrl-C stops everything.
#
#   scripts/demo.sh           run until Ctrl-C
#   scripts/demo.sh --check   start, make one request, stop; exit status = the request's
#
# DEMO_MODE=static runs Envoy in static mode instead (`switchyard render envoy`,
# no control plane; LISTEN_PORT / ADMIN_PORT override 8080 / 9901 there).
# DEMO_FILTER=native runs the native filter (an Envoy dynamic module,
# scripts/build-native.sh) instead of the wasm one, in either mode.
# DEMO_PLAIN=1 runs a plain Envoy without the filter (checks the plumbing only).
# Logs, configs and the control plane's state: .work/demo/ (state is fresh each run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: scripts/demo.sh [--check]" >&2; exit 2 ;;
esac
listen="127.0.0.1:${LISTEN_PORT:-8080}"
admin="127.0.0.1:${ADMIN_PORT:-9901}"
work="$root/.work/demo"
mkdir -p "$work"
say() { echo "demo: $*" >&2; }

pids=()
cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    say "stopping ${#pids[@]} processes"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# (first: it also installs protoc, which building switchyard needs)
envoy="$(bash scripts/install-envoy.sh | tail -1)"
filter="${DEMO_FILTER:-wasm}"
case "$filter" in wasm|native) ;; *) say "DEMO_FILTER must be wasm or native"; exit 2 ;; esac
say "building ($filter filter, switchyard, hello-world-upstream)"
if [[ "$filter" == native ]]; then bash "$root/scripts/build-native.sh" -q; else bash "$root/scripts/build-wasm.sh" -q; fi
cargo build -q -p switchyard -p hello-world-upstream
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
wasm="$target/wasm32-wasip1/release/switchyard_filter.wasm"
filter_args=(--filter "$filter" --native "$target/native/libswitchyard_native.so")

mode="${DEMO_MODE:-ads}"
[[ "${DEMO_PLAIN:-}" == 1 ]] && mode=plain
internal="127.0.0.1:15001"
while read -r component version port; do
  say "upstream $component/$version on 127.0.0.1:$port"
  call=()
  if [[ "$mode" == ads && "$component" == frontend ]]; then call=(--call-backend "http://$internal"); fi
  "$target/debug/hello-world-upstream" --listen "127.0.0.1:$port" \
    --component "$component" --version "$version" "${call[@]}" >"$work/upstream-$component-$version.log" 2>&1 &
  pids+=($!)
done < <(grep -v '^\s*#' examples/hello-world/upstreams.txt | grep -v '^\s*$')

if [[ "$mode" == ads ]]; then
  listen="127.0.0.1:8080"; admin="127.0.0.1:9901"   # as in envoy/bootstrap-ads.yaml
  rm -rf "$work/state"
  say "starting switchyard serve (xDS 127.0.0.1:18000, API 127.0.0.1:18001), log: $work/switchyard.log"
  "$target/debug/switchyard" serve --config examples/hello-world/resources.yaml --state "$work/state" \
    --wasm "$wasm" "${filter_args[@]}" --listen "$listen" --internal-listen "$internal" >"$work/switchyard.log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 100); do
    if "$target/debug/switchyard" status >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  cp envoy/bootstrap-ads.yaml "$work/envoy.yaml"
elif [[ "$mode" == plain ]]; then
  # Without Switchyard: a plain Envoy routing everything to frontend f1a0001
  # (for checking the demo's plumbing only).
  say "DEMO_PLAIN=1: plain Envoy without the Switchyard filter"
  port="$(awk '$1 == "frontend" && $2 == "f1a0001" {print $3}' examples/hello-world/upstreams.txt)"
  .venv/bin/python - "$work/envoy.yaml" "${listen#*:}" "${admin#*:}" "$port" <<'PY'
import sys
sys.path.insert(0, "tests/e2e")
import harness
out, listen, admin, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
harness.write_yaml(out, harness.static_bootstrap(listen, admin, {"frontend": [f"127.0.0.1:{port}"]}))
PY
else
  say "rendering the Envoy bootstrap (static mode) from examples/hello-world/resources.yaml"
  "$target/debug/switchyard" render envoy --config examples/hello-world/resources.yaml \
    --wasm "$wasm" "${filter_args[@]}" --listen "$listen" --admin "$admin" >"$work/envoy.yaml"
  if ! grep -q static_resources "$work/envoy.yaml"; then
    say "switchyard render envoy printed no Envoy bootstrap"
    exit 1
  fi
fi

say "starting envoy ($envoy), log: $work/envoy.log"
"$envoy" -c "$work/envoy.yaml" --use-dynamic-base-id --concurrency 1 -l warning \
  >"$work/envoy.log" 2>&1 </dev/null &
envoy_pid=$!
pids+=("$envoy_pid")
ready=false
for _ in $(seq 120); do
  if ! kill -0 "$envoy_pid" 2>/dev/null; then break; fi
  if [[ "$(curl -fsS "http://$admin/ready" 2>/dev/null)" == LIVE ]]; then ready=true; break; fi
  sleep 0.25
done
if ! $ready; then
  say "envoy did not become ready; last log lines:"
  tail -30 "$work/envoy.log" >&2
  exit 1
fi

if $check; then
  say "GET http://$listen/dev/hello"
  for _ in $(seq 100); do   # in ADS mode the listener arrives just after /ready
    if curl -fsS "http://$listen/dev/hello" >"$work/check.json" 2>/dev/null; then break; fi
    sleep 0.1
  done
  curl -fsS "http://$listen/dev/hello"
  echo
  exit 0
fi

if [[ "$mode" == ads ]]; then
  sy="$target/debug/switchyard"
  cat <<MSG

Switchyard demo is running: Envoy on http://$listen (admin http://$admin), the
control plane's API on http://127.0.0.1:18001. The frontend calls its backend
through the internal listener $internal, so each answer shows both versions.
Try:
  curl -s 'http://$listen/dev/hello'                                  # team-a's release: hello-world-main (f1a0001 → b1a0001)
  curl -s 'http://$listen/dev/hello?kf-dep=hello-world-v2&kf-ve=team-a'  # v2: the same frontend → b2a0002
  curl -s 'http://$listen/dev/hello?kf-ve=joe'                           # VE joe: vars.who == Joe
  $sy release hello-world-v2 --virtual-env team-a                       # plain URLs now reach v2
  $sy explain '/dev/hello'                                               # the real engine says where and why
  $sy rollback --virtual-env team-a                                      # back to hello-world-main
  $sy status                                                             # releases, Envoys, ACKed versions
The dashboard: http://127.0.0.1:18001/ui/ — sign in with the admin token that
serve left on this machine (the one running serve), in
  ${XDG_CONFIG_HOME:-$HOME/.config}/switchyard/credentials/127.0.0.1_18001   (also $work/state/admin.token)
e.g.  cat ${XDG_CONFIG_HOME:-$HOME/.config}/switchyard/credentials/127.0.0.1_18001
Logs: $work/
Press Ctrl-C to stop.
MSG
  wait "$envoy_pid" || true
  exit 0
fi

cat <<MSG

Switchyard demo is running: Envoy on http://$listen (admin http://$admin).
Try:
  curl -i 'http://$listen/dev/hello'                                  # team-a's release (hello-world-main)
  curl 'http://$listen/dev/hello?kf-ve=joe'                           # VE joe: vars.who == Joe
  curl 'http://$listen/dev/hello?kf-dep=hello-world-v2&kf-ve=team-a'  # an explicit deployment
  curl -H 'kf-dep: hello-world-v3' 'http://$listen/dev/hello'         # selectors as headers too
  curl 'http://$listen/dev/hello/backend?kf-dep=hello-world-v2'       # the backend b2a0002
  curl 'http://$listen/dev/nowhere'                                   # 404 route_not_found
Logs: $work/
Press Ctrl-C to stop.
MSG
wait "$envoy_pid" || true
say "envoy exited; log tail:"
tail -20 "$work/envoy.log" >&2
