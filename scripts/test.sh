#!/usr/bin/env bash
# Runs every test: formatting, lints, the Rust unit and integration tests, and the
# Python suites against real processes. One build profile (release) for all of it.
# Long soak/chaos runs are opt-in: MOONCAKE_SOAK=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
step() { echo; echo "=== $* ($(date +%T))"; }

step "install build dependencies"
scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build (release)"
cargo build --release --workspace --bins

step "Rust tests (release)"
cargo test --release --workspace

if [ -f crates/mooncake-py/pyproject.toml ]; then
  step "Python package and pytest"
  VENV=${MOONCAKE_VENV:-$ROOT/target/venv}
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip maturin pytest numpy >/dev/null
  "$VENV/bin/pip" install -q --force-reinstall crates/mooncake-py
  MOONCAKE_BIN_DIR=$ROOT/target/release "$VENV/bin/python" -m pytest -q crates/mooncake-py/tests
fi

step "all tests passed"
