#!/usr/bin/env bash
# Benchmark: continuous WAL archiving and point-in-time restore on a throwaway PostgreSQL.
#
# Usage: bash scripts/bench-wal.sh [--scale N] [--seconds N] [--keep] [-h|--help]
#   --scale N    pgbench scale of the database (about 15 MB each), default 60 (~0.9 GB)
#   --seconds N  how long each write-heavy pgbench run lasts, default 60
#   --keep       keep the work directory (cluster, archives, logs)
#   -h, --help   this text
# Environment: BENCH_DIR  work directory, default bench-wal-work in the repository root (must
#                         not exist yet; removed at the end unless --keep)
#
# Steps: installs what is missing (scripts/setup.sh); builds the release binaries; initdb +
# pg_ctl a private server (as user postgres when run as root; 127.0.0.1 on a free port;
# wal_level=replica, archive_mode=on, max_wal_size=1GB); pgbench -i at --scale; then, with the
# same write-heavy load (pgbench -N -c 4 -j 2 -T SECONDS) each time:
#   (a) archive_command = 'cp %p DIR/%f'                       the floor
#   (b) archive_command = 'backup-wal push %p'                 gzip + AES-256-CBC, local disk
# each through a wrapper that records every call's wall time; prints the segments written and
# archived, the mean and median time per segment, the ratio (b)/(a) (goal: at most 1.5x) and
# whether the archiver fell behind (finished segments still waiting when the load stopped, and
# how long it took to catch up). Then peak RSS of one backup-wal push and one fetch
# (/usr/bin/time -v; goal: under 64 MiB), and the restore of the database as it was at the end
# of (b): restore-database --pitr latest --start (a base backup taken after (b), as a weekly one
# would be recent; extraction, WAL replay, promotion) against createdb + psql of a plain
# pg_dump of the same data into a second, non-archiving server (goal: at most 0.3x). Each
# restore runs three times after `sync` (neither pays for the other's writeback) and the
# medians are compared; psql's time to a CHECKPOINT (its data on disk, as the restore's is) is
# shown beside it. Exit status 0 when every step ran (a missed goal is reported, not an error).
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

SCALE=60
SECONDS_RUN=60
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --scale) SCALE=${2:?--scale needs a value}; shift 2 ;;
    --seconds) SECONDS_RUN=${2:?--seconds needs a value}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-wal: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "bench-wal: --scale takes a whole number" >&2; exit 2; }
[[ $SECONDS_RUN =~ ^[1-9][0-9]*$ ]] || { echo "bench-wal: --seconds takes a whole number" >&2; exit 2; }

cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
die() { echo "bench-wal: $*" >&2; exit 1; }

say "setup"
BACKUP_SETUP_BENCH=1 bash scripts/setup.sh
[ -x /usr/bin/time ] || die "/usr/bin/time is missing after scripts/setup.sh"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/pgbench" ] || die "no pgbench under /usr/lib/postgresql/*/bin"
export PATH="$PG_BIN:$PATH"

say "build (release)"
cargo build --locked --release -p backup-cli --bins
TARGET_DIR=$(cargo metadata --locked --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
REL=$TARGET_DIR/release
for b in backup-tool backup-wal backup-database restore-database; do
  [ -x "$REL/$b" ] || die "$REL/$b was not built"
done

W=${BENCH_DIR:-./bench-wal-work}
[ -e "$W" ] && die "work directory $W exists; remove it or set BENCH_DIR to a new path"
mkdir -p "$W"
W=$(cd "$W" && pwd)
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then AS_PG=(runuser -u postgres --); fi
DATA=$W/data
STARTED=()
cleanup() {
  local status=$?
  for d in "${STARTED[@]}"; do
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
  if [ "$status" -ne 0 ] && [ -f "$W/postgres.log" ]; then
    echo "bench-wal: failed; last lines of the server log:" >&2
    tail -n 15 "$W/postgres.log" >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then echo "bench-wal: work directory kept: $W" >&2; else rm -rf "$W"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unset DATABASE_URL BACKUP_CONFIG BACKUP_COMPRESSION BACKUP_S3_BUCKET BACKUP_KEYRING_DIR RUST_LOG

say "PostgreSQL ($PG_BIN, work directory $W)"
chmod 755 "$W"
mkdir -p "$W/cp" "$W/backups" "$W/restored"
openssl rand -base64 48 > "$W/encryption.key"
chmod 600 "$W/encryption.key"
[ ${#AS_PG[@]} -gt 0 ] && chown -R postgres: "$W"
PGPASSWORD=$(openssl rand -hex 16)
( umask 077; printf '%s\n' "$PGPASSWORD" > "$W/pwfile" )
[ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$W/pwfile"
for d in "$DATA" "$W/ingest"; do
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$d" -U postgres --auth=scram-sha-256 \
    --pwfile="$W/pwfile" -E UTF8 --locale=C --no-sync >"$W/initdb.log" 2>&1 \
    || { cat "$W/initdb.log" >&2; die "initdb failed"; }
done
rm -f "$W/pwfile"

# Every archive_command call goes through this wrapper: start, end, exit status per file.
cat > "$W/timed.sh" <<'EOF'
#!/bin/bash
start=$(date +%s.%N)
"$@"
rc=$?
echo "$(basename "${@: -1}") $start $(date +%s.%N) $rc" >> "$TIMED_LOG"
exit $rc
EOF
# backup-wal push with its settings: what an archive_command runs.
cat > "$W/push.sh" <<EOF
#!/bin/bash
export BACKUP_LOCAL_DIR=$W/backups BACKUP_ENCRYPTION_KEY_FILE=$W/encryption.key HOME=$W
exec $REL/backup-wal --quiet push "\$1"
EOF
chmod 755 "$W/timed.sh" "$W/push.sh"
[ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$W/timed.sh" "$W/push.sh"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$((20000 + RANDOM % 40000)); port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port"
}
cat >>"$DATA/postgresql.conf" <<EOF

# scripts/bench-wal.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
max_connections = 20
wal_level = replica
archive_mode = on
archive_command = 'TIMED_LOG=$W/none.log $W/timed.sh cp %p $W/cp/%f'
max_wal_size = 1GB
EOF
PORT=$(free_port)
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -l "$W/postgres.log" -w -t 60 -o "-p $PORT" start >/dev/null
STARTED+=("$DATA")
export PGPASSWORD PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
export POSTGRES_PASSWORD=$PGPASSWORD POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=$PORT POSTGRES_USER=postgres
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
psql_q -c "SELECT version()"

say "pgbench -i -s $SCALE"
started=$SECONDS
pgbench -i -s "$SCALE" -q postgres >"$W/pgbench-init.log" 2>&1 || { tail "$W/pgbench-init.log"; die "pgbench -i failed"; }
echo "loaded in $((SECONDS - started)) s: $(psql_q -c "SELECT pg_size_pretty(pg_database_size('postgres'))")"

SEG=$(psql_q -c "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
segno() { local n=${1:8:16}; [ ${#n} -eq 16 ] || { echo 0; return; }; echo $(( (16#${n:0:8} << 32 | 16#${n:8:8}) )); }

# One load under archive_command $1 (its calls logged to $2); prints the figures.
run_load() {
  local command=$1 log=$2 label=$3
  : > "$log"; [ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$log"
  psql_q -c "ALTER SYSTEM SET archive_command = 'TIMED_LOG=$log $command'" -c "SELECT pg_reload_conf()" >/dev/null
  # Let the last file of the previous load through, then start from a fresh segment.
  psql_q -c "SELECT pg_switch_wal()" >/dev/null
  sleep 2
  local start_lsn end_lsn
  start_lsn=$(psql_q -c "SELECT pg_current_wal_lsn()")
  pgbench -N -c 4 -j 2 -T "$SECONDS_RUN" postgres >"$W/pgbench-$label.log" 2>&1 || die "pgbench failed"
  end_lsn=$(psql_q -c "SELECT pg_current_wal_lsn()")
  local current last waiting written
  current=$(psql_q -c "SELECT pg_walfile_name('$end_lsn')")
  last=$(psql_q -c "SELECT coalesce(last_archived_wal, '000000010000000000000000') FROM pg_stat_archiver")
  waiting=$(( $(segno "$current") - $(segno "${last:0:24}") - 1 ))
  [ "$waiting" -lt 0 ] && waiting=0
  written=$(psql_q -c "SELECT ceil(pg_wal_lsn_diff('$end_lsn', '$start_lsn') / $SEG)")
  # Catching up: until the segment before the current one is archived.
  local catch=$SECONDS target
  target=$(printf '%s' "$current")
  while :; do
    last=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [ "$(segno "${last:0:24}")" -ge $(( $(segno "$target") - 1 )) ] && break
    [ $((SECONDS - catch)) -gt 600 ] && die "$label: the archiver did not catch up in 10 minutes"
    sleep 0.2
  done
  local caught=$((SECONDS - catch))
  local tps
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$W/pgbench-$label.log" | head -n 1)
  local durations failed n mean median
  durations=$(awk '$4 == 0 && $1 ~ /^[0-9A-F]+$/ && length($1) == 24 { printf "%.6f\n", $3 - $2 }' "$log" | sort -n)
  failed=$(awk '$4 != 0' "$log" | wc -l)
  n=$(printf '%s\n' "$durations" | grep -c . || true)
  mean=$(printf '%s\n' "$durations" | awk 'NF { s += $1; n++ } END { printf "%.3f", n ? s / n : 0 }')
  median=$(printf '%s\n' "$durations" | awk -v n="$n" 'NF { i++; if (i == int((n + 1) / 2)) printf "%.3f", $1 }')
  echo "$label: $written segments written in the load (tps $tps), $n archived, $failed failed calls; per segment mean ${mean} s, median ${median:-0} s; $waiting finished segments waiting when the load stopped, caught up ${caught} s later"
  echo "$label $mean $waiting" >> "$W/summary.txt"
}

say "(a) archive_command = cp, $SECONDS_RUN s of pgbench -N"
run_load "$W/timed.sh cp %p $W/cp/%f" "$W/cp.log" cp
say "base backup (for the restore at the end)"
# From here on the WAL goes to backup-wal, so the base backup's own WAL is in its archive.
: > "$W/base-push.log"; [ ${#AS_PG[@]} -gt 0 ] && chown postgres: "$W/base-push.log"
psql_q -c "ALTER SYSTEM SET archive_command = 'TIMED_LOG=$W/base-push.log $W/timed.sh $W/push.sh %p'" \
  -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "SELECT pg_switch_wal()" >/dev/null
"${AS_PG[@]}" env BACKUP_LOCAL_DIR="$W/backups" BACKUP_ENCRYPTION_KEY_FILE="$W/encryption.key" \
  HOME="$W" PGPASSWORD="$PGPASSWORD" POSTGRES_PASSWORD="$PGPASSWORD" POSTGRES_HOST=127.0.0.1 \
  POSTGRES_PORT="$PORT" POSTGRES_USER=postgres "$REL/backup-database" --quiet --physical \
  > "$W/base.txt" || die "backup-database --physical failed"
echo "stored $(cat "$W/base.txt")"
say "(b) archive_command = backup-wal push, $SECONDS_RUN s of pgbench -N"
run_load "$W/timed.sh $W/push.sh %p" "$W/push.log" backup-wal

say "peak RSS of one push and one fetch"
one=$(ls "$W/cp" | grep -E '^[0-9A-F]{24}$' | tail -n 1)
mkdir -p "$W/rss/pg_wal" "$W/rss/backups"
cp "$W/cp/$one" "$W/rss/pg_wal/$one"
[ ${#AS_PG[@]} -gt 0 ] && chown -R postgres: "$W/rss"
# Prints "SECONDS KB": wall time and peak RSS of the command.
rss_of() { /usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1; }
read -r push_s push_kb < <(rss_of "${AS_PG[@]}" env BACKUP_LOCAL_DIR="$W/rss/backups" \
  BACKUP_ENCRYPTION_KEY_FILE="$W/encryption.key" HOME="$W" "$REL/backup-wal" --quiet push "$W/rss/pg_wal/$one")
read -r fetch_s fetch_kb < <(rss_of "${AS_PG[@]}" env BACKUP_LOCAL_DIR="$W/rss/backups" \
  BACKUP_ENCRYPTION_KEY_FILE="$W/encryption.key" HOME="$W" BACKUP_WAL_FETCH_AHEAD=1 \
  "$REL/backup-wal" --quiet fetch "$one" "$W/rss/pg_wal/RECOVERYXLOG")
cmp -s "$W/cp/$one" "$W/rss/pg_wal/RECOVERYXLOG" || die "the fetched segment differs from the original"
read -r cp_s _ < <(rss_of cp "$W/cp/$one" "$W/rss/copy")
echo "push: $((push_kb / 1024)) MiB, fetch: $((fetch_kb / 1024)) MiB"
echo "one segment with nothing else running: push ${push_s} s, fetch ${fetch_s} s, cp ${cp_s} s"

say "restore: --pitr latest against psql of a dump (three runs each, medians)"
left=$(psql_q -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do
  last=$(psql_q -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
  [ "$(segno "${last:0:24}")" -ge "$(segno "$left")" ] && break
  sleep 0.5
done
# A weekly base backup would be recent: take one now, so that the restore is the database's
# (plus the little WAL since), not a replay of the whole load above. VACUUM first: the
# autovacuum that follows the load otherwise writes several hundred MB of WAL (full pages)
# right after the base backup, and the restore would be timing their replay (about 0.1 s
# per segment; the number replayed is printed).
psql_q -c "VACUUM" >/dev/null
"${AS_PG[@]}" env BACKUP_LOCAL_DIR="$W/backups" BACKUP_ENCRYPTION_KEY_FILE="$W/encryption.key" \
  HOME="$W" PGPASSWORD="$PGPASSWORD" POSTGRES_PASSWORD="$PGPASSWORD" POSTGRES_HOST=127.0.0.1 \
  POSTGRES_PORT="$PORT" POSTGRES_USER=postgres "$REL/backup-database" --quiet --physical \
  > "$W/base2.txt" || die "backup-database --physical failed"
echo "stored $(cat "$W/base2.txt") ($(du -sm "$W/backups/base" | cut -f1) MB of base backups)"
pg_dump postgres > "$W/dump.sql"
dump_mb=$(( $(stat -c %s "$W/dump.sql") / 1000000 ))
rows_src=$(psql_q -c "SELECT sum(abalance) FROM pgbench_accounts")
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'; }
# The restores first: WAL written into the archived server from here on (a psql ingest into
# it) would be replayed by --pitr latest too.
RPORT=$(free_port)
: > "$W/pitr-times.txt"
for run in 1 2 3; do
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$W/restored/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$W/restored/data"
  sync
  t0=$(date +%s.%N)
  "${AS_PG[@]}" env BACKUP_LOCAL_DIR="$W/backups" BACKUP_ENCRYPTION_KEY_FILE="$W/encryption.key" \
    HOME="$W" "$REL/restore-database" --quiet --pitr latest --target-dir "$W/restored/data" \
    --start --port "$RPORT" > "$W/pitr.txt" || die "restore-database --pitr failed"
  t=$(calc "$(date +%s.%N) - $t0")
  STARTED+=("$W/restored/data")
  rows_pitr=$(psql_q -p "$RPORT" -c "SELECT sum(abalance) FROM pgbench_accounts")
  [ "$rows_src" = "$rows_pitr" ] || die "the restored database differs (sum of balances $rows_pitr, source $rows_src)"
  replayed=$(sed -n 's/.*timelines \[[0-9, ]*\], \([0-9]*\) segments.*/\1/p' "$W/pitr.txt")
  echo "run $run: restore-database --pitr latest --start: $t s, ${replayed:-?} WAL segments replayed (balances equal the source's)"
  echo "$t" >> "$W/pitr-times.txt"
done
# psql into a second server that archives nothing, with the same settings otherwise.
IPORT=$(free_port)
printf '%s\n' "" "# scripts/bench-wal.sh: the psql side of the restore comparison" \
  "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$W'" "max_connections = 20" \
  "max_wal_size = 1GB" >> "$W/ingest/postgresql.conf"
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$W/ingest" -l "$W/ingest.log" -w -t 60 -o "-p $IPORT" start >/dev/null
STARTED+=("$W/ingest")
: > "$W/psql-times.txt"
: > "$W/psql-checkpoint-times.txt"
for run in 1 2 3; do
  psql_q -p "$IPORT" -c "DROP DATABASE IF EXISTS ingest" -c "CREATE DATABASE ingest" >/dev/null
  sync
  t0=$(date +%s.%N)
  psql -X -q -v ON_ERROR_STOP=1 -p "$IPORT" -d ingest -f "$W/dump.sql" >/dev/null
  t=$(calc "$(date +%s.%N) - $t0")
  psql_q -p "$IPORT" -c "CHECKPOINT" >/dev/null
  tc=$(calc "$(date +%s.%N) - $t0")
  echo "run $run: psql of the ${dump_mb} MB dump: $t s ($tc s to a CHECKPOINT)"
  echo "$t" >> "$W/psql-times.txt"
  echo "$tc" >> "$W/psql-checkpoint-times.txt"
done
t_pitr=$(median < "$W/pitr-times.txt")
t_psql=$(median < "$W/psql-times.txt")
t_psql_durable=$(median < "$W/psql-checkpoint-times.txt")
echo "medians: restore-database --pitr latest --start ${t_pitr} s; psql ${t_psql} s (${t_psql_durable} s to a CHECKPOINT)"

say "summary"
read -r _ cp_mean _ < <(grep '^cp ' "$W/summary.txt")
read -r _ push_mean push_waiting < <(grep '^backup-wal ' "$W/summary.txt")
ratio=$(calc "$push_mean / $cp_mean")
restore_ratio=$(calc "$t_pitr / $t_psql")
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }
echo "per segment: backup-wal push ${push_mean} s, cp ${cp_mean} s: ${ratio}x (goal <= 1.5x: $(verdict "$ratio <= 1.5"))"
echo "archiver behind when the load stopped: ${push_waiting} finished segments (goal 0-1: $(verdict "$push_waiting <= 1"))"
echo "restore: --pitr ${t_pitr} s, psql ${t_psql} s: ${restore_ratio}x (goal <= 0.3x: $(verdict "$restore_ratio <= 0.3")); against psql to a CHECKPOINT (${t_psql_durable} s): $(calc "$t_pitr / $t_psql_durable")x"
echo "peak RSS: push $((push_kb / 1024)) MiB, fetch $((fetch_kb / 1024)) MiB (goal < 64 MiB: $(verdict "$push_kb < 65536 && $fetch_kb < 65536"))"
echo "machine: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
