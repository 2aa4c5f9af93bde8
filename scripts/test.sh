#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then fmt, clippy and every
# test (unit, conformance, real PostgreSQL/openssl/gunzip interop, end-to-end binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc (warnings are errors: broken links, missing docs)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "== tests"
# The end-to-end tests in tests/ run the binaries of backup-cli and the embedding examples:
# build them first, so that they are never stale whatever subset of tests runs.
cargo build --workspace --bins --examples --locked
# Always the same runner: nextest (per-test timeouts from .config/nextest.toml), installed
# from crates.io when missing.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
cargo nextest run --workspace --locked --no-fail-fast
# nextest does not run doctests
cargo test --workspace --locked --doc
