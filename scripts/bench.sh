#!/usr/bin/env bash
# Benchmark: backup-database / restore-database against the shell pipeline they replace,
#   pg_dump | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:KEY > FILE
#   openssl enc -d -aes-256-cbc -pbkdf2 -pass file:KEY -in FILE | gunzip | psql
# on a throwaway PostgreSQL filled with generated data of a chosen dump size.
#
# Usage: bash scripts/bench.sh [--size-mb N] [--runs N] [--threads LIST] [--keep] [-h|--help]
#        bash scripts/bench.sh --backup-all [OPTIONS]
#   --backup-all runs scripts/bench-all.sh with the OPTIONS after it instead (backup-all over a
#                generated database and Redis data set against backup-database and
#                backup-redis alone; see bash scripts/bench-all.sh --help); must come first
#   --size-mb N  size of the database's plain pg_dump output in MB (10^6 bytes), default 500;
#                the data generator's scale is calibrated from a scale-1 load
#   --runs N     timed runs per command (hyperfine --runs), default $RUNS or 3
#   --threads LIST  also measure compression per thread count, e.g. 1,2,4: the compression
#                stage alone (examples/compression_stage.rs over the dump in a file: MB/s,
#                speed-up, scaling efficiency, size, for gzip and zstd), then end to end
#                backup-database --compression gzip|zstd --compression-threads T against
#                pg_dump > /dev/null (hyperfine), with the ratio and the issue's goals; and
#                the CPU floor: one more run of each with the CPU seconds of every process
#                (the server's too, from /proc/stat) over the cores, the fastest this
#                machine could possibly finish that work, as a ratio to pg_dump
#   --keep       keep the work directory (cluster, backups, hyperfine JSON, logs) and leave
#                the server's data there, stopped
#   -h, --help   this text
# Environment: BENCH_DIR  work directory, default bench-work in the repository root (must not
#                         exist yet; removed at the end unless --keep)
#              RUNS       default for --runs
#
# Steps: installs hyperfine and /usr/bin/time when missing (scripts/setup.sh); builds the
# release binaries and examples/load_sample_data.rs once; initdb + pg_ctl a private server
# (newest /usr/lib/postgresql/*/bin, as user postgres when run as root, 127.0.0.1 on a free
# port, scram-sha-256 password auth with a random password that tools get from
# PGPASSWORD / POSTGRES_PASSWORD only); loads the data with fsync=off, then switches back to
# durable defaults (fsync=on) for every timed run; times with hyperfine:
#   (a) pg_dump > /dev/null                   (c) backup-database --compression gzip
#   (b) the old backup pipeline to a file      (d) backup-database --compression zstd
#   ref: pg_dump | zstd -3 | openssl enc, what (d) does, with stock tools (no target)
#   (e) the old restore pipeline vs restore-database, each into a new empty database made
#       (untimed) in hyperfine's --prepare
# plus one extra run of each under /usr/bin/time -v for peak RSS; prints output sizes and a
# summary with PASS/FAIL against the targets. Exit status: 0 when every step ran (a missed
# target is reported, not an error), non-zero when a step failed. Nothing secret is ever on a
# command line: the key goes by `-pass file:`/key file, the password by environment.
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

if [ "${1:-}" = --backup-all ]; then shift; exec bash "$(dirname "$0")/bench-all.sh" "$@"; fi

SIZE_MB=500
RUNS=${RUNS:-3}
KEEP=0
THREADS=
while [ $# -gt 0 ]; do
  case $1 in
    --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
    --threads=*) THREADS=${1#*=}; shift ;;
    --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
    --size-mb=*) SIZE_MB=${1#*=}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --backup-all) echo "bench: --backup-all must be the first argument (see --help)" >&2; exit 2 ;;
    *) echo "bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench: --size-mb takes a whole number >= 1" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench: --runs takes a whole number >= 1" >&2; exit 2; }
[ -z "$THREADS" ] || [[ $THREADS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] \
  || { echo "bench: --threads takes thread counts separated by commas, e.g. 1,2,4" >&2; exit 2; }

cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
say "setup"
BACKUP_SETUP_BENCH=1 bash scripts/setup.sh
for tool in hyperfine pg_dump psql openssl gzip gunzip zstd; do
  command -v "$tool" >/dev/null || die "$tool is missing after scripts/setup.sh"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is missing after scripts/setup.sh"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] \
  || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
# The same client tools for the old pipeline and for ours (they find pg_dump/psql on PATH).
export PATH="$PG_BIN:$PATH"

BENCH_START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)

# ---------------------------------------------------------------------------------------------
say "build (release)"
cargo build --locked --release -p backup-cli --bins
cargo build --locked --release --example load_sample_data --example compression_stage
TARGET_DIR=$(cargo metadata --locked --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET_DIR" ] || die "could not find cargo's target directory"
BACKUP_BIN=$TARGET_DIR/release/backup-database
RESTORE_BIN=$TARGET_DIR/release/restore-database
LOADER=$TARGET_DIR/release/examples/load_sample_data
STAGE=$TARGET_DIR/release/examples/compression_stage
for b in "$BACKUP_BIN" "$RESTORE_BIN" "$LOADER"; do [ -x "$b" ] || die "$b was not built"; done

# ---------------------------------------------------------------------------------------------
W=${BENCH_DIR:-./bench-work}
[ -e "$W" ] && die "work directory $W exists; remove it or set BENCH_DIR to a new path"
mkdir -p "$W"
W=$(cd "$W" && pwd)
PGDIR=$W/pg
STARTED_PG=0
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then AS_PG=(runuser -u postgres --); fi

cleanup() {
  local status=$?
  if [ "$STARTED_PG" = 1 ]; then
    local mode=immediate
    [ "$KEEP" = 1 ] && mode=fast
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m "$mode" -w stop >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$PGDIR/postgres.log" ]; then
    echo "bench: failed; last lines of the server log:" >&2
    tail -n 15 "$PGDIR/postgres.log" >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then
    echo "bench: work directory kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Don't let the caller's environment change what is measured.
unset DATABASE_URL PGSERVICE PGSERVICEFILE PGPASSFILE PGOPTIONS PG_BIN_DIR BACKUP_CONFIG \
  BACKUP_COMPRESSION BACKUP_COMPRESSION_LEVEL BACKUP_NAME_PREFIX BACKUP_PBKDF2_ITERATIONS \
  BACKUP_S3_BUCKET BACKUP_KEYRING_DIR RUST_LOG

say "PostgreSQL ($PG_BIN, work directory $W)"
mkdir -p "$PGDIR" "$W/results" "$W/rss" "$W/old" "$W/ours-gzip" "$W/ours-zstd"
if [ ${#AS_PG[@]} -gt 0 ]; then
  chown postgres: "$PGDIR"
  "${AS_PG[@]}" test -w "$PGDIR" \
    || die "user postgres cannot write $PGDIR (is a parent directory private?); set BENCH_DIR"
fi
PGPASSWORD=$(openssl rand -hex 16)
( umask 077; printf '%s\n' "$PGPASSWORD" > "$PGDIR/pwfile" )
[ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$PGDIR/pwfile"
initdb_ok=0
for locale in C.UTF-8 C; do
  if "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth=scram-sha-256 \
      --pwfile="$PGDIR/pwfile" -E UTF8 --locale="$locale" --no-sync >"$PGDIR/initdb.log" 2>&1; then
    initdb_ok=1; break
  fi
  rm -rf "$PGDIR/data"
done
rm -f "$PGDIR/pwfile"
[ "$initdb_ok" = 1 ] || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
# TCP on 127.0.0.1 only, no Unix socket; otherwise the server's defaults.
cat >>"$PGDIR/data/postgresql.conf" <<'EOF'

# scripts/bench.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 20
EOF

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + RANDOM % 40000))
  port_in_use "$p" && continue
  if "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
      -o "-p $p" start >/dev/null; then
    PORT=$p; STARTED_PG=1; break
  fi
  grep -q 'Address already in use' "$PGDIR/postgres.log" 2>/dev/null || die "pg_ctl start failed"
done
[ -n "$PORT" ] || die "could not find a free port for PostgreSQL"

export PGPASSWORD PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
export POSTGRES_PASSWORD=$PGPASSWORD POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=$PORT \
  POSTGRES_USER=postgres POSTGRES_DB=bench
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
psql_q -c "SELECT version()"

# Bulk-load settings, undone before anything is timed.
psql_q -c "ALTER SYSTEM SET fsync = off" -c "ALTER SYSTEM SET full_page_writes = off" \
  -c "ALTER SYSTEM SET synchronous_commit = off" -c "ALTER SYSTEM SET maintenance_work_mem = '256MB'" \
  -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null

# ---------------------------------------------------------------------------------------------
say "data: calibrating with scale 1"
createdb calib
POSTGRES_DB=calib "$LOADER" --scale 1 >"$W/load-calib.log" 2>&1 \
  || { cat "$W/load-calib.log" >&2; die "loading the calibration data failed"; }
CALIB_BYTES=$(pg_dump -d calib | wc -c)
dropdb calib
TARGET_BYTES=$((SIZE_MB * 1000000))
SCALE=$(( (TARGET_BYTES + CALIB_BYTES - 1) / CALIB_BYTES ))
[ "$SCALE" -ge 1 ] || SCALE=1
echo "scale 1 dumps to $CALIB_BYTES bytes; loading scale $SCALE for ~${SIZE_MB} MB"
say "data: loading scale $SCALE into database bench (fsync off)"
createdb bench
export PGDATABASE=bench
load_started=$SECONDS
"$LOADER" --scale "$SCALE" 2>"$W/load.log" || { tail -n 20 "$W/load.log" >&2; die "loading the data failed"; }
echo "loaded in $((SECONDS - load_started)) s"

# Durable defaults again for every timed run, and everything on disk first.
psql_q -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "CHECKPOINT"
sync
echo "server settings for the timed runs: $(psql_q -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'maintenance_work_mem', 'wal_level')")"

KEY=$W/encryption.key
( umask 077; printf 'bench-%s\n' "$(openssl rand -hex 24)" > "$KEY" )
export BACKUP_ENCRYPTION_KEY_FILE=$KEY

# ---------------------------------------------------------------------------------------------
q() { printf '%q' "$1"; }
OLD_FILE=$W/old/randevubu_backup.sql.gz.enc
CMD_A="pg_dump > /dev/null"
CMD_B="set -o pipefail; pg_dump | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:$(q "$KEY") > $(q "$OLD_FILE")"
CMD_C="$(q "$BACKUP_BIN") --local-dir $(q "$W/ours-gzip") --compression gzip"
CMD_D="$(q "$BACKUP_BIN") --local-dir $(q "$W/ours-zstd") --compression zstd"
REF_FILE=$W/old/reference.sql.zst.enc
CMD_R="set -o pipefail; pg_dump | zstd -q -3 | openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:$(q "$KEY") > $(q "$REF_FILE")"
PREP_A="true"
PREP_B="rm -f $(q "$OLD_FILE")"
PREP_C="rm -rf $(q "$W/ours-gzip/database")"
PREP_D="rm -rf $(q "$W/ours-zstd/database")"
PREP_R="rm -f $(q "$REF_FILE")"
N_A="pg_dump > /dev/null"
N_B="old: pg_dump | gzip | openssl enc"
N_C="backup-database --compression gzip"
N_D="backup-database --compression zstd"
N_R="ref: pg_dump | zstd -3 | openssl"

# hyperfine over one group of commands (arrays G_NAMES, G_PREPS, G_CMDS: name, --prepare
# command, command); on failure each command runs once more with its output shown.
hyperfine_group() { # json/markdown base name, warmup runs
  local base=$1 warmup=$2 args=() wu=() i
  for i in "${!G_NAMES[@]}"; do
    args+=(--prepare "${G_PREPS[$i]}" -n "${G_NAMES[$i]}" "${G_CMDS[$i]}")
  done
  [ "$warmup" -gt 0 ] && wu=(--warmup "$warmup")
  if ! hyperfine --shell=bash --runs "$RUNS" "${wu[@]}" --export-json "$W/results/$base.json" \
      --export-markdown "$W/results/$base.md" "${args[@]}"; then
    echo "bench: hyperfine failed; running each command once to show why" >&2
    for i in "${!G_NAMES[@]}"; do
      bash -c "${G_PREPS[$i]}" >/dev/null 2>&1 || true
      if ! bash -c "${G_CMDS[$i]}" >"$W/failed.out" 2>&1; then
        echo "bench: '${G_NAMES[$i]}' failed; its last output lines:" >&2
        tail -n 25 "$W/failed.out" >&2
      fi
    done
    die "a benchmarked command failed"
  fi
}

say "backup: hyperfine, $RUNS runs + 1 warmup each"
G_NAMES=("$N_A" "$N_B" "$N_C" "$N_D" "$N_R")
G_PREPS=("$PREP_A" "$PREP_B" "$PREP_C" "$PREP_D" "$PREP_R")
G_CMDS=("$CMD_A" "$CMD_B" "$CMD_C" "$CMD_D" "$CMD_R")
hyperfine_group backup 1

backup_object() { # the one backup under DIR/database (not its manifest)
  local f
  f=$(find "$1/database" -maxdepth 1 -type f -name '*.enc' | sort | tail -n 1)
  [ -n "$f" ] || die "no backup object in $1/database"
  printf '%s' "$f"
}
OURS_GZ=$(backup_object "$W/ours-gzip")
OURS_ZST=$(backup_object "$W/ours-zstd")
RESTORE_FILE=$OURS_GZ

# Restores: each run restores into a new, empty database made in hyperfine's --prepare (not
# timed) for both, so both do the same work: ours restores into an existing empty database.
CMD_E_OLD="set -o pipefail; openssl enc -d -aes-256-cbc -pbkdf2 -pass file:$(q "$KEY") -in $(q "$OLD_FILE") | gunzip | psql -X -q -v ON_ERROR_STOP=1 -d restore_old > /dev/null"
CMD_E_OURS="$(q "$RESTORE_BIN") --file $(q "$RESTORE_FILE") --target-db restore_ours"
PREP_E_OLD="dropdb --if-exists restore_old && createdb restore_old"
PREP_E_OURS="dropdb --if-exists restore_ours && createdb restore_ours"
N_E_OLD="old: openssl -d | gunzip | psql"
N_E_OURS="restore-database (gzip)"

say "restore: hyperfine, $RUNS runs each (no warmup)"
G_NAMES=("$N_E_OLD" "$N_E_OURS")
G_PREPS=("$PREP_E_OLD" "$PREP_E_OURS")
G_CMDS=("$CMD_E_OLD" "$CMD_E_OURS")
hyperfine_group restore 0

# ---------------------------------------------------------------------------------------------
say "peak RSS: one more run of each under /usr/bin/time -v"
T="/usr/bin/time -v -o"
maxrss() { sed -n 's/.*Maximum resident set size (kbytes): *\([0-9]*\).*/\1/p' "$1"; }

# A pipeline: every stage under its own /usr/bin/time; the peak is the sum of the stages'
# peaks (they run at the same time). Prints "sum_kb (stage_kb + stage_kb + ...)".
rss_stages() {
  local sum=0 parts=() f kb
  for f in "$@"; do kb=$(maxrss "$f"); sum=$((sum + kb)); parts+=("$kb"); done
  local IFS=+
  printf '%s (%s)' "$sum" "${parts[*]}"
}

# One of our binaries: /usr/bin/time -v reports the largest process of the tree (the binary
# or its pg_dump/psql child); the binary's own high-water mark (VmHWM) is sampled meanwhile.
# Sets RSS_TREE and RSS_OWN (kB).
rss_ours() {
  local slug=$1 cmd=$2 tpid child hwm own=0
  $T "$W/rss/$slug.time" bash -c "exec $cmd" >"$W/rss/$slug.out" 2>&1 &
  tpid=$!
  while kill -0 "$tpid" 2>/dev/null; do
    for child in $(pgrep -P "$tpid" 2>/dev/null || true); do
      hwm=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$child/status" 2>/dev/null || true)
      [ -n "$hwm" ] && [ "$hwm" -gt "$own" ] && own=$hwm
    done
    sleep 0.05
  done
  wait "$tpid" || { cat "$W/rss/$slug.out" >&2; die "$slug failed in its /usr/bin/time run"; }
  RSS_TREE=$(maxrss "$W/rss/$slug.time")
  RSS_OWN=$own
}

bash -c "set -o pipefail; $T $(q "$W/rss/a.pg_dump") pg_dump | wc -c > $(q "$W/rss/a.bytes")"
RSS_A=$(maxrss "$W/rss/a.pg_dump")
DUMP_BYTES=$(tr -d ' ' <"$W/rss/a.bytes")

bash -c "$PREP_B"
bash -c "set -o pipefail; $T $(q "$W/rss/b.1") pg_dump | $T $(q "$W/rss/b.2") gzip | $T $(q "$W/rss/b.3") openssl enc -aes-256-cbc -salt -pbkdf2 -pass file:$(q "$KEY") > $(q "$OLD_FILE")"
RSS_B=$(rss_stages "$W/rss/b.1" "$W/rss/b.2" "$W/rss/b.3")

bash -c "$PREP_C"
rss_ours c "$CMD_C"; RSS_C_TREE=$RSS_TREE; RSS_C_OWN=$RSS_OWN
OURS_GZ=$(backup_object "$W/ours-gzip")
bash -c "$PREP_D"
rss_ours d "$CMD_D"; RSS_D_TREE=$RSS_TREE; RSS_D_OWN=$RSS_OWN
OURS_ZST=$(backup_object "$W/ours-zstd")

bash -c "$PREP_E_OLD"
bash -c "set -o pipefail; $T $(q "$W/rss/e_old.1") openssl enc -d -aes-256-cbc -pbkdf2 -pass file:$(q "$KEY") -in $(q "$OLD_FILE") | $T $(q "$W/rss/e_old.2") gunzip | $T $(q "$W/rss/e_old.3") psql -X -q -v ON_ERROR_STOP=1 -d restore_old > /dev/null"
RSS_E_OLD=$(rss_stages "$W/rss/e_old.1" "$W/rss/e_old.2" "$W/rss/e_old.3")

bash -c "$PREP_E_OURS"
CMD_E_OURS="$(q "$RESTORE_BIN") --file $(q "$OURS_GZ") --target-db restore_ours"
rss_ours e_ours "$CMD_E_OURS"; RSS_E_TREE=$RSS_TREE; RSS_E_OWN=$RSS_OWN

# ---------------------------------------------------------------------------------------------
say "check: restored row counts"
COUNT_SQL="SELECT concat_ws(' ', (SELECT count(*) FROM businesses), (SELECT count(*) FROM staff),
  (SELECT count(*) FROM services), (SELECT count(*) FROM customers),
  (SELECT count(*) FROM appointments), (SELECT count(*) FROM payments),
  (SELECT count(*) FROM reviews), (SELECT count(*) FROM reporting.\"Daily Stats\"))"
COUNTS_SRC=$(psql_q -d bench -c "$COUNT_SQL")
COUNTS_OLD=$(psql_q -d restore_old -c "$COUNT_SQL")
COUNTS_OURS=$(psql_q -d restore_ours -c "$COUNT_SQL")
echo "rows (businesses staff services customers appointments payments reviews daily_stats)"
echo "  source:            $COUNTS_SRC"
echo "  old restore:       $COUNTS_OLD"
echo "  restore-database:  $COUNTS_OURS"
ROWS_OK=1
[ "$COUNTS_OLD" = "$COUNTS_SRC" ] && [ "$COUNTS_OURS" = "$COUNTS_SRC" ] || ROWS_OK=0

# ---------------------------------------------------------------------------------------------
# hyperfine's JSON, without jq: "command" then "mean", "stddev", "user", "system" per result.
stat_of() { # file name field
  awk -v want="$2" -v field="$3" '
    /"command": / { sub(/^[^:]*: "/, ""); sub(/",?[ \t]*$/, ""); cmd = $0; gsub(/\\"/, "\"", cmd) }
    $0 ~ "^ *\"" field "\": " && cmd == want { v = $0; sub(/^[^:]*: */, "", v); sub(/,$/, "", v); print v; exit }
  ' "$1"
}
MEAN_A=$(stat_of "$W/results/backup.json" "$N_A" mean)
MEAN_B=$(stat_of "$W/results/backup.json" "$N_B" mean)
MEAN_C=$(stat_of "$W/results/backup.json" "$N_C" mean)
MEAN_D=$(stat_of "$W/results/backup.json" "$N_D" mean)
MEAN_R=$(stat_of "$W/results/backup.json" "$N_R" mean)
MEAN_E_OLD=$(stat_of "$W/results/restore.json" "$N_E_OLD" mean)
MEAN_E_OURS=$(stat_of "$W/results/restore.json" "$N_E_OURS" mean)
for v in MEAN_A MEAN_B MEAN_C MEAN_D MEAN_R MEAN_E_OLD MEAN_E_OURS; do
  [[ ${!v} =~ ^[0-9.eE+-]+$ ]] || die "could not read $v from hyperfine's JSON"
done

row() { # name file [no-rate]
  local name=$1 file=$2 norate=${3:-} mean sd user sys
  mean=$(stat_of "$file" "$name" mean); sd=$(stat_of "$file" "$name" stddev)
  user=$(stat_of "$file" "$name" user); sys=$(stat_of "$file" "$name" system)
  awk -v n="$name" -v m="$mean" -v s="$sd" -v u="$user" -v y="$sys" -v mb="$DUMP_BYTES" -v norate="$norate" 'BEGIN {
    sd = (s == "null" || s == "") ? "-" : sprintf("%.2f", s)
    rate = norate ? "       -" : sprintf("%7.1f MB/s", mb / 1e6 / m)
    printf "  %-36s %8.2f s  +- %5s  %8.2f s  %s\n", n, m, sd, u + y, rate }'
}
kb_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
own_mib() { if [ "$1" -gt 0 ]; then kb_mib "$1"; else echo "n/a"; fi; } # 0: not sampled (no pgrep?)
size_of() { stat -c %s "$1"; }
SIZE_OLD=$(size_of "$OLD_FILE"); SIZE_GZ=$(size_of "$OURS_GZ"); SIZE_ZST=$(size_of "$OURS_ZST")
BENCH_END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# Ratio of two hyperfine means and its 1-sigma uncertainty from their standard deviations.
ratio() { # file name_a name_b -> "ratio error"
  local ma sa mb sb
  ma=$(stat_of "$1" "$2" mean); sa=$(stat_of "$1" "$2" stddev)
  mb=$(stat_of "$1" "$3" mean); sb=$(stat_of "$1" "$3" stddev)
  awk -v ma="$ma" -v sa="$sa" -v mb="$mb" -v sb="$sb" 'BEGIN {
    if (sa == "null") sa = 0; if (sb == "null") sb = 0
    r = ma / mb; printf "%.2f %.2f", r, r * sqrt((sa / ma) ^ 2 + (sb / mb) ^ 2) }'
}
# PASS when the ratio is within the limit; a miss smaller than 1 sigma is marked as noise.
verdict() { # "ratio error" limit
  awk -v r="${1%% *}" -v e="${1##* }" -v t="$2" 'BEGIN {
    if (r <= t) print "PASS"; else if (r - e <= t) print "FAIL (within 1 sigma)"; else print "FAIL" }'
}
R_C=$(ratio "$W/results/backup.json" "$N_C" "$N_B")
R_D=$(ratio "$W/results/backup.json" "$N_D" "$N_A")
R_E=$(ratio "$W/results/restore.json" "$N_E_OURS" "$N_E_OLD")
rss_verdict() { [ "$1" -lt $((64 * 1024)) ] && echo PASS || echo FAIL; }

{
  say "results"
  echo "data: scale $SCALE, plain dump $DUMP_BYTES bytes ($(awk -v b="$DUMP_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }') MB), target ${SIZE_MB} MB"
  echo "machine: $NPROC cores; load average (1/5/15 min) at start $BENCH_START_LOAD, at end $BENCH_END_LOAD"
  echo "runs: $RUNS timed per command (+1 warmup for backups); times are hyperfine means"
  echo
  echo "  command                                  mean        +-sd   user+sys   dump MB/s"
  row "$N_A" "$W/results/backup.json"
  row "$N_B" "$W/results/backup.json"
  row "$N_C" "$W/results/backup.json"
  row "$N_D" "$W/results/backup.json"
  row "$N_R" "$W/results/backup.json"
  row "$N_E_OLD" "$W/results/restore.json"
  row "$N_E_OURS" "$W/results/restore.json"
  echo
  echo "  peak RSS (MiB)                           whole run   own process"
  printf '  %-36s %9s\n' "$N_A" "$(kb_mib "$RSS_A")"
  printf '  %-36s %9s   sum of stages pg_dump+gzip+openssl (kB): %s\n' "$N_B" "$(kb_mib "${RSS_B%% *}")" "$RSS_B"
  printf '  %-36s %9s %9s\n' "$N_C" "$(kb_mib "$RSS_C_TREE")" "$(own_mib "$RSS_C_OWN")"
  printf '  %-36s %9s %9s\n' "$N_D" "$(kb_mib "$RSS_D_TREE")" "$(own_mib "$RSS_D_OWN")"
  printf '  %-36s %9s   sum of stages openssl+gunzip+psql (kB): %s\n' "$N_E_OLD" "$(kb_mib "${RSS_E_OLD%% *}")" "$RSS_E_OLD"
  printf '  %-36s %9s %9s\n' "$N_E_OURS" "$(kb_mib "$RSS_E_TREE")" "$(own_mib "$RSS_E_OWN")"
  echo
  echo "  stored size                                   bytes    % of dump"
  for pair in "old pipeline (gzip -6 + openssl)|$SIZE_OLD" "backup-database gzip|$SIZE_GZ" "backup-database zstd|$SIZE_ZST"; do
    awk -v n="${pair%%|*}" -v s="${pair##*|}" -v d="$DUMP_BYTES" 'BEGIN { printf "  %-36s %12d %8.1f%%\n", n, s, 100 * s / d }'
  done
  echo
  say "summary"
  printf '  %-44s %-22s %-12s %8s  %s\n' "target" "measured" "ratio +-1sd" "limit" "verdict"
  printf '  %-44s %-22s %-12s %8s  %s\n' "backup-database gzip vs old pipeline" "$(printf '%.2f s vs %.2f s' "$MEAN_C" "$MEAN_B")" "${R_C% *}x +-${R_C#* }" "<= 1.00x" "$(verdict "$R_C" 1.00)"
  printf '  %-44s %-22s %-12s %8s  %s\n' "backup-database zstd vs pg_dump > /dev/null" "$(printf '%.2f s vs %.2f s' "$MEAN_D" "$MEAN_A")" "${R_D% *}x +-${R_D#* }" "<= 1.15x" "$(verdict "$R_D" 1.15)"
  printf '  %-44s %-22s %-12s %8s  %s\n' "  (info) zstd vs stock-tool zstd pipeline" "$(printf '%.2f s vs %.2f s' "$MEAN_D" "$MEAN_R")" "$(ratio "$W/results/backup.json" "$N_D" "$N_R" | sed 's/ /x +-/')" "" ""
  printf '  %-44s %-22s %-12s %8s  %s\n' "restore-database vs old restore pipeline" "$(printf '%.2f s vs %.2f s' "$MEAN_E_OURS" "$MEAN_E_OLD")" "${R_E% *}x +-${R_E#* }" "<= 1.00x" "$(verdict "$R_E" 1.00)"
  printf '  %-44s %-22s %-12s %8s  %s\n' "peak RSS backup-database gzip" "$(kb_mib "$RSS_C_TREE") MiB" "" "< 64 MiB" "$(rss_verdict "$RSS_C_TREE")"
  printf '  %-44s %-22s %-12s %8s  %s\n' "peak RSS backup-database zstd" "$(kb_mib "$RSS_D_TREE") MiB" "" "< 64 MiB" "$(rss_verdict "$RSS_D_TREE")"
  printf '  %-44s %-22s %-12s %8s  %s\n' "peak RSS restore-database" "$(kb_mib "$RSS_E_TREE") MiB" "" "< 64 MiB" "$(rss_verdict "$RSS_E_TREE")"
  printf '  %-44s %-22s %-12s %8s  %s\n' "restored row counts equal the source" "$([ "$ROWS_OK" = 1 ] && echo yes || echo no)" "" "" "$([ "$ROWS_OK" = 1 ] && echo PASS || echo FAIL)"
  cat <<EOF

Notes: means of $RUNS runs on $NPROC cores. The old pipeline runs pg_dump, gzip and openssl as
three processes on separate cores; backup-database runs compression and encryption in one
process on tokio's threads beside its pg_dump child, so on 2 cores pg_dump, compression and
encryption compete for CPU. backup-database also fsyncs the object and writes a manifest
(the old pipeline's '> FILE' does not fsync). "ref:" does (d)'s work with stock tools
(zstd -3 and openssl as separate processes), to tell the tools' cost from our overhead; it
has no target. RSS "whole run" is /usr/bin/time -v of the command (for our binaries the
larger of the binary and its pg_dump/psql child; the verdict uses it, an upper bound);
"own process" is the binary's sampled VmHWM. Both restores go into an empty database
created in hyperfine's --prepare (not timed); restore-database also reads the stored object
once more to check its SHA-256 before the first byte reaches psql. "within 1 sigma":
the miss is smaller than the runs' spread; rerun with more --runs before trusting it. The
server runs with durable defaults (fsync on) for all timed runs; only the data load ran
with fsync off. pg_dump's user+sys excludes the server backend that does most of its work.
EOF
} | tee "$W/results/summary.txt"

[ "$ROWS_OK" = 1 ] || die "a restore did not reproduce the source's row counts"

# ---------------------------------------------------------------------------------------------
if [ -n "$THREADS" ]; then
  say "compression stage alone, threads $THREADS (the dump in a file, read from the page cache)"
  pg_dump > "$W/stage.sql"
  cat "$W/stage.sql" > /dev/null
  "$STAGE" --input "$W/stage.sql" --threads "$THREADS" --compression gzip,zstd \
    | tee "$W/results/stage.txt"
  rm -f "$W/stage.sql"

  say "end to end per thread count: hyperfine, $RUNS runs + 1 warmup each"
  G_NAMES=("$N_A"); G_PREPS=("$PREP_A"); G_CMDS=("$CMD_A")
  for t in ${THREADS//,/ }; do
    for c in gzip zstd; do
      G_NAMES+=("$c, $t threads")
      G_PREPS+=("rm -rf $(q "$W/threads-$c-$t/database")")
      G_CMDS+=("$(q "$BACKUP_BIN") --local-dir $(q "$W/threads-$c-$t") --compression $c --compression-threads $t")
    done
  done
  hyperfine_group threads 1
  {
    say "end to end per thread count (ratio to pg_dump > /dev/null; goals on this issue: gzip <= 1.5x, zstd <= 1.03x)"
    row "$N_A" "$W/results/threads.json"
    for t in ${THREADS//,/ }; do
      for c in gzip zstd; do
        r=$(ratio "$W/results/threads.json" "$c, $t threads" "$N_A")
        limit=1.5; [ "$c" = zstd ] && limit=1.03
        printf '%s   %sx +-%s  %s\n' "$(row "$c, $t threads" "$W/results/threads.json")" "${r% *}" "${r#* }" "$(verdict "$r" "$limit")"
      done
    done
  } | tee "$W/results/threads.txt"

  # The floor on this machine: one more run of each, counting the CPU time of every process
  # (the server backend that does most of pg_dump's work included) from /proc/stat. No
  # schedule can finish a run faster than its CPU seconds over the cores; that floor, over
  # pg_dump's wall time, is the best ratio this machine allows for that work.
  say "CPU floor: one more run of each, CPU seconds of all processes (/proc/stat)"
  HZ=$(getconf CLK_TCK)
  busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
  cpu_run() { # prepare command -> "busy_s wall_s"
    bash -c "$1"
    local b0 t0 b1 t1
    b0=$(busy); t0=$(date +%s.%N)
    bash -c "$2" >/dev/null 2>&1 || die "a CPU-floor run failed: $2"
    t1=$(date +%s.%N); b1=$(busy)
    awk -v a="$b0" -v b="$b1" -v hz="$HZ" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.2f %.2f", (b - a) / hz, e - s }'
  }
  {
    read -r BUSY_A WALL_A <<<"$(cpu_run "$PREP_A" "$CMD_A")"
    printf '  %-28s cpu %7.2f s  wall %7.2f s  (%.2f cores busy)\n' "$N_A" "$BUSY_A" "$WALL_A" "$(awk -v b="$BUSY_A" -v w="$WALL_A" 'BEGIN { print b / w }')"
    for t in ${THREADS//,/ }; do
      for c in gzip zstd; do
        read -r BUSY WALL <<<"$(cpu_run "rm -rf $(q "$W/threads-$c-$t/database")" "$(q "$BACKUP_BIN") --local-dir $(q "$W/threads-$c-$t") --compression $c --compression-threads $t")"
        awk -v n="$c, $t threads" -v b="$BUSY" -v w="$WALL" -v ba="$BUSY_A" -v wa="$WALL_A" -v cores="$NPROC" 'BEGIN {
          floor = b / cores; if (floor < wa) floor = wa
          printf "  %-28s cpu %7.2f s  wall %7.2f s  (%.2f cores busy; +%.2f cpu s over pg_dump)  floor on %d cores %.2f s = %.2fx of pg_dump\n", n, b, w, b / w, b - ba, cores, floor, floor / wa }'
      done
    done
  } | tee "$W/results/cpu-floor.txt"
fi
