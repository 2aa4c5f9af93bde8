#!/usr/bin/env bash
# Installs the system packages the tool, its tests and its quickstart need, when missing.
# Safe to run repeatedly; does nothing when everything is present. Debian/Ubuntu (apt-get).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL server binaries (initdb, postgres) for the throwaway test clusters, and the
# client tools (pg_dump, pg_restore, psql) the tool drives.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
if ! have psql || ! have pg_dump; then need+=(postgresql-client); fi
# Throwaway Redis servers for the tests (redis-server), and redis-cli for the benchmark.
have redis-server || need+=(redis-server)
have redis-cli || need+=(redis-tools)
# Interop tests run the real tools.
have openssl || need+=(openssl)
have gzip || need+=(gzip)
have zstd || need+=(zstd)
# Build tools for crates with C parts (ring).
have cc || need+=(gcc)
have pkg-config || need+=(pkg-config)
# GNU time: the hostile-RDB end-to-end tests (tests/e2e/redis_hostile.rs) measure each
# binary's peak RSS with /usr/bin/time -f %M; the benchmarks use it too.
[ -x /usr/bin/time ] || need+=(time)
# Benchmarks: repeated timings.
if [ "${BACKUP_SETUP_BENCH:-0}" = 1 ]; then
  have hyperfine || need+=(hyperfine)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have cargo; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and re-run" >&2
  exit 3
fi
