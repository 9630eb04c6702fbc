#!/usr/bin/env bash
# Run every test: Rust unit/integration tests, formatting, clippy, the book's
# build and links, and the end-to-end tests against a real Envoy (tests/e2e; the
# dashboard's in headless Chromium, the docs' walkthrough commands). Stops at the first failure
# and exits with its status.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { echo; echo "==> $*" >&2; }

step "install Envoy and the test dependencies"
bash scripts/install-envoy.sh

step "build the wasm filter (cargo + wasm-opt: scripts/build-wasm.sh)"
bash scripts/build-wasm.sh

step "build the native filter (an Envoy dynamic module: scripts/build-native.sh)"
bash scripts/build-native.sh

step "cargo test --workspace"
cargo test --workspace

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "the book (mdbook build docs) and its links (scripts/check-links.py)"
"${CARGO_HOME:-$HOME/.cargo}/bin/mdbook" build docs
python3 scripts/check-links.py docs/book README.md docs/src/SUMMARY.md

step "end-to-end tests (pytest tests/e2e)"
cargo build -p switchyard -p hello-world-upstream
SWITCHYARD_SKIP_BUILD=1 .venv/bin/python -m pytest tests/e2e -q "$@"

step "the README's demo command, once (scripts/demo.sh --check)"
bash scripts/demo.sh --check >/dev/null
