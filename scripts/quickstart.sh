#!/usr/bin/env bash
# Quickstart: installs what is missing, builds, and runs examples/quickstart.rs, which starts a
# throwaway PostgreSQL with sample data, backs it up to ./quickstart-backups, lists, dry-runs,
# restores into a new database and compares every table; then does the same for a throwaway
# Redis (backup over the replication protocol, dry run, online restore, key-by-key compare);
# then runs the nightly job, backup-all, over both servers, a sample config directory and a
# log directory with a local webhook receiver, and backup-status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --locked -p backup-cli --bins
cargo run --locked --example quickstart -- "$@"
