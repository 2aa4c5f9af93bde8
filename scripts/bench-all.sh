#!/usr/bin/env bash
# Benchmark: backup-all over a generated PostgreSQL database and a generated Redis data set,
# against backup-database and backup-redis run alone. backup-all runs its database and Redis
# components at the same time, so its wall time should be close to the slower of the two alone
# (target: at most 1.15x), and the whole run should stay under 96 MiB of peak RSS.
#
# Usage: bash scripts/bench-all.sh [--db-mb N] [--redis-mb N] [--runs N] [--keep] [-h|--help]
#        bash scripts/bench.sh --backup-all [the same options]
#   --db-mb N     size of the database's plain pg_dump output in MB (10^6 bytes), default 300;
#                 the data generator's scale is calibrated from a scale-1 load (as bench.sh)
#   --redis-mb N  approximate size of the Redis RDB in MB, default 150 (as bench-redis.sh's
#                 data: 70% strings of 0.5-4 KB of base64 text, 30% hashes of 20 fields)
#   --runs N      timed runs per command (hyperfine --runs), default $RUNS or 3
#   --keep        keep the work directory (cluster, Redis data, backups, logs, hyperfine JSON)
#                 and leave the PostgreSQL data there, stopped
#   -h, --help    this text
# Environment: BENCH_DIR  work directory, default bench-all-work in the repository root (must
#                         not exist yet; removed at the end unless --keep)
#              RUNS       default for --runs
#
# Steps: installs hyperfine, /usr/bin/time, redis-server and redis-tools when missing
# (scripts/setup.sh); builds the release binaries and examples/load_sample_data.rs; starts a
# private PostgreSQL (initdb + pg_ctl, newest /usr/lib/postgresql/*/bin, as user postgres when
# run as root, 127.0.0.1 on a free port, scram-sha-256 with a random password) loaded with
# fsync=off and then switched back to durable defaults, and a private redis-server (127.0.0.1,
# free port, random password from a config file, no persistence, repl-diskless-sync-delay 0);
# passwords reach the tools through PGPASSWORD / POSTGRES_PASSWORD / REDIS_PASSWORD only. Then,
# with BACKUP_COMPRESSION=gzip and one key file, each run into a fresh empty backup directory
# (hyperfine --prepare 'rm -rf DIR', 1 warmup run each), times with hyperfine:
#   (a) backup-database                            alone
#   (b) backup-redis                               alone (updates redis/latest/, as backup-all)
#   (c) backup-all --skip config --skip logs --verify none --no-prune
#                                                  the two components at once, nothing after
#   (d) backup-all --skip config --skip logs      verify hash + retention (informational)
# plus one more run of (c) under /usr/bin/time -v while sampling VmHWM of backup-tool and of
# its children (pg_dump), for peak RSS, and the CPU of backup-tool's main thread and of the
# machine; prints that run's timeline from its log in BACKUP_LOG_DIR and a summary with
# PASS/FAIL: (c) / max((a), (b)) <= 1.15x, whole-run peak RSS < 96 MiB. Exit status: 0 when
# every step ran (a missed target is reported, not an error), non-zero when a step failed.
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

DB_MB=300
REDIS_MB=150
RUNS=${RUNS:-3}
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --db-mb) DB_MB=${2:?--db-mb needs a value}; shift 2 ;;
    --db-mb=*) DB_MB=${1#*=}; shift ;;
    --redis-mb) REDIS_MB=${2:?--redis-mb needs a value}; shift 2 ;;
    --redis-mb=*) REDIS_MB=${1#*=}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-all: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $DB_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench-all: --db-mb takes a whole number >= 1" >&2; exit 2; }
[[ $REDIS_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench-all: --redis-mb takes a whole number >= 1" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench-all: --runs takes a whole number >= 1" >&2; exit 2; }

cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
die() { echo "bench-all: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
say "setup"
BACKUP_SETUP_BENCH=1 bash scripts/setup.sh
for tool in hyperfine pg_dump psql openssl redis-server redis-cli python3 pgrep; do
  command -v "$tool" >/dev/null || die "$tool is missing after scripts/setup.sh"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is missing after scripts/setup.sh"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] \
  || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)"
# The server's own client tools (backup-database finds pg_dump on PATH).
export PATH="$PG_BIN:$PATH"

BENCH_START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
NPROC=$(nproc)

# ---------------------------------------------------------------------------------------------
say "build (release)"
cargo build --release --workspace --bins --locked
cargo build --locked --release --example load_sample_data
TARGET_DIR=$(cargo metadata --locked --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET_DIR" ] || die "could not find cargo's target directory"
DB_BIN=$TARGET_DIR/release/backup-database
REDIS_BIN=$TARGET_DIR/release/backup-redis
ALL_BIN=$TARGET_DIR/release/backup-all
TOOL_BIN=$TARGET_DIR/release/backup-tool
LOADER=$TARGET_DIR/release/examples/load_sample_data
for b in "$DB_BIN" "$REDIS_BIN" "$ALL_BIN" "$TOOL_BIN" "$LOADER"; do
  [ -x "$b" ] || die "$b was not built"
done

# ---------------------------------------------------------------------------------------------
W=${BENCH_DIR:-./bench-all-work}
[ -e "$W" ] && die "work directory $W exists; remove it or set BENCH_DIR to a new path"
mkdir -p "$W"
W=$(cd "$W" && pwd)
PGDIR=$W/pg
STARTED_PG=0
REDIS_PID=
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then AS_PG=(runuser -u postgres --); fi

cleanup() {
  local status=$?
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  fi
  if [ "$STARTED_PG" = 1 ]; then
    local mode=immediate
    [ "$KEEP" = 1 ] && mode=fast
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m "$mode" -w stop >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ]; then
    for log in "$PGDIR/postgres.log" "$W/redis/redis.log"; do
      [ -f "$log" ] || continue
      echo "bench-all: failed; last lines of $log:" >&2
      tail -n 15 "$log" >&2 || true
    done
  fi
  if [ "$KEEP" = 1 ]; then
    echo "bench-all: work directory kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Don't let the caller's environment change what is measured: every setting of the tool, of
# PostgreSQL's and Redis's clients, and of AWS goes; what the runs need is set below.
while read -r v; do
  case $v in BACKUP_*|POSTGRES_*|REDIS_*|REDISCLI_*|AWS_*|PG*) unset "$v" ;; esac
done < <(compgen -e)
unset DATABASE_URL RUST_LOG

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
say "PostgreSQL ($PG_BIN, work directory $W)"
mkdir -p "$PGDIR" "$W/results" "$W/rss" "$W/logs" "$W/redis/data"
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

# scripts/bench-all.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 20
EOF

PG_PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + RANDOM % 40000))
  port_in_use "$p" && continue
  if "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
      -o "-p $p" start >/dev/null; then
    PG_PORT=$p; STARTED_PG=1; break
  fi
  grep -q 'Address already in use' "$PGDIR/postgres.log" 2>/dev/null || die "pg_ctl start failed"
done
[ -n "$PG_PORT" ] || die "could not find a free port for PostgreSQL"

export PGPASSWORD PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=postgres
export POSTGRES_PASSWORD=$PGPASSWORD POSTGRES_HOST=127.0.0.1 POSTGRES_PORT=$PG_PORT \
  POSTGRES_USER=postgres POSTGRES_DB=bench
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
psql_q -c "SELECT version()"

# Bulk-load settings, undone before anything is timed.
psql_q -c "ALTER SYSTEM SET fsync = off" -c "ALTER SYSTEM SET full_page_writes = off" \
  -c "ALTER SYSTEM SET synchronous_commit = off" -c "ALTER SYSTEM SET maintenance_work_mem = '256MB'" \
  -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null

say "database: calibrating with scale 1"
createdb calib
POSTGRES_DB=calib "$LOADER" --scale 1 >"$W/load-calib.log" 2>&1 \
  || { cat "$W/load-calib.log" >&2; die "loading the calibration data failed"; }
CALIB_BYTES=$(pg_dump -d calib | wc -c)
dropdb calib
SCALE=$(( (DB_MB * 1000000 + CALIB_BYTES - 1) / CALIB_BYTES ))
[ "$SCALE" -ge 1 ] || SCALE=1
echo "scale 1 dumps to $CALIB_BYTES bytes; loading scale $SCALE for ~${DB_MB} MB"
say "database: loading scale $SCALE into database bench (fsync off)"
createdb bench
export PGDATABASE=bench
load_started=$SECONDS
"$LOADER" --scale "$SCALE" 2>"$W/load.log" || { tail -n 20 "$W/load.log" >&2; die "loading the data failed"; }
echo "loaded in $((SECONDS - load_started)) s"

# Durable defaults again for every timed run, and everything on disk first.
psql_q -c "ALTER SYSTEM RESET ALL" -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "CHECKPOINT"
DUMP_BYTES=$(pg_dump | wc -c)
echo "plain dump: $DUMP_BYTES bytes"

# ---------------------------------------------------------------------------------------------
say "redis-server"
REDIS_PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + RANDOM % 40000))
  [ "$p" = "$PG_PORT" ] && continue
  port_in_use "$p" || { REDIS_PORT=$p; break; }
done
[ -n "$REDIS_PORT" ] || die "no free port for redis-server"
REDIS_PASSWORD=$(openssl rand -hex 16)
# The password goes in through a config file read by the server, not its command line.
( umask 077; printf 'requirepass %s\n' "$REDIS_PASSWORD" > "$W/redis/redis.conf" )
redis-server "$W/redis/redis.conf" --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$W/redis/data" \
  --save "" --appendonly no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
  --logfile "$W/redis/redis.log" --daemonize no &
REDIS_PID=$!
export REDISCLI_AUTH=$REDIS_PASSWORD REDIS_PASSWORD REDIS_HOST=127.0.0.1 REDIS_PORT
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis-server did not start"
redis-cli -p "$REDIS_PORT" info server | grep -E '^redis_version' | tr -d '\r'

# bench-redis.sh's generator; keys and field names add about 4% to the values in the RDB.
say "redis: ~${REDIS_MB} MB of RDB"
load_started=$SECONDS
python3 - "$(awk -v m="$REDIS_MB" 'BEGIN { printf "%.6f", m / 1.04 / 1000 }')" <<'PY' \
  | redis-cli -p "$REDIS_PORT" --pipe >"$W/redis/load.log"
import base64, os, random, sys
target = int(float(sys.argv[1]) * 1e9)
out = sys.stdout.buffer
rnd = random.Random(42)
pool = base64.b64encode(os.urandom(1 << 20))  # 1.4 MB of base64 text to cut values from
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
written = 0
i = 0
buf = []
while written < target:
    if rnd.random() < 0.7:
        n = rnd.randint(512, 4096)
        off = rnd.randint(0, len(pool) - n)
        v = pool[off:off + n]
        buf.append(cmd(b"SET", b"user:session:%d" % i, v))
        written += n
    else:
        args = [b"HSET", b"profile:%d" % i]
        for f in range(20):
            n = rnd.randint(16, 128)
            off = rnd.randint(0, len(pool) - n)
            args += [b"field%d" % f, pool[off:off + n]]
            written += n
        buf.append(cmd(*args))
    i += 1
    if len(buf) >= 1000:
        out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
PY
tail -n 2 "$W/redis/load.log"
echo "loaded in $((SECONDS - load_started)) s: $(redis-cli -p "$REDIS_PORT" dbsize) keys, $(redis-cli -p "$REDIS_PORT" info memory | grep '^used_memory_human' | tr -d '\r')"
redis-cli -p "$REDIS_PORT" --rdb "$W/redis/size.rdb" >/dev/null
RDB_BYTES=$(stat -c %s "$W/redis/size.rdb")
rm -f "$W/redis/size.rdb"
echo "RDB: $RDB_BYTES bytes"
sync

# ---------------------------------------------------------------------------------------------
KEY=$W/encryption.key
( umask 077; printf 'bench-%s\n' "$(openssl rand -hex 24)" > "$KEY" )
export BACKUP_ENCRYPTION_KEY_FILE=$KEY BACKUP_COMPRESSION=gzip BACKUP_LOG_DIR=$W/logs
# Each command below sets its own BACKUP_LOCAL_DIR; this one is only a safe default.
export BACKUP_LOCAL_DIR=$W/backups

q() { printf '%q' "$1"; }
SKIP="--skip config --skip logs"
N_A="(a) backup-database"
N_B="(b) backup-redis"
N_C="(c) backup-all, verify none, no prune"
N_D="(d) backup-all, verify hash + prune"
CMD_A="BACKUP_LOCAL_DIR=$(q "$W/out-a") $(q "$DB_BIN")"
CMD_B="BACKUP_LOCAL_DIR=$(q "$W/out-b") $(q "$REDIS_BIN")"
ARGS_C="$SKIP --verify none --no-prune"
CMD_C="BACKUP_LOCAL_DIR=$(q "$W/out-c") $(q "$ALL_BIN") $ARGS_C"
CMD_D="BACKUP_LOCAL_DIR=$(q "$W/out-d") $(q "$ALL_BIN") $SKIP"
G_NAMES=("$N_A" "$N_B" "$N_C" "$N_D")
G_PREPS=("rm -rf $(q "$W/out-a")" "rm -rf $(q "$W/out-b")" "rm -rf $(q "$W/out-c")" "rm -rf $(q "$W/out-d")")
G_CMDS=("$CMD_A" "$CMD_B" "$CMD_C" "$CMD_D")

say "timings: hyperfine, $RUNS runs + 1 warmup each"
args=()
for i in "${!G_NAMES[@]}"; do args+=(--prepare "${G_PREPS[$i]}" -n "${G_NAMES[$i]}" "${G_CMDS[$i]}"); done
if ! hyperfine --shell=bash --runs "$RUNS" --warmup 1 --export-json "$W/results/all.json" \
    --export-markdown "$W/results/all.md" "${args[@]}"; then
  echo "bench-all: hyperfine failed; running each command once to show why" >&2
  for i in "${!G_NAMES[@]}"; do
    bash -c "${G_PREPS[$i]}" >/dev/null 2>&1 || true
    if ! bash -c "${G_CMDS[$i]}" >"$W/failed.out" 2>&1; then
      echo "bench-all: '${G_NAMES[$i]}' failed; its last output lines:" >&2
      tail -n 25 "$W/failed.out" >&2
    fi
  done
  die "a benchmarked command failed"
fi
for d in out-c out-d; do
  find "$W/$d/database" -name '*.sql.gz.enc' 2>/dev/null | grep -q . || die "$d has no database backup"
  find "$W/$d/redis" -name '*.rdb.gz.enc' 2>/dev/null | grep -q . || die "$d has no Redis backup"
done

# ---------------------------------------------------------------------------------------------
say "peak RSS: one more run of (c) under /usr/bin/time -v, sampling VmHWM"
# backup-all execs backup-tool (same PID), whose child is pg_dump. /usr/bin/time -v reports
# the largest single process of that tree; the whole run holds backup-tool and pg_dump at the
# same time, so their peaks (VmHWM, sampled every 50 ms) are added up. The servers' processes
# (the PostgreSQL backend, redis-server's fork that streams the RDB) are not counted.
mkdir -p "$W/logs-rss"
rm -rf "$W/out-rss"
BACKUP_LOCAL_DIR=$W/out-rss BACKUP_LOG_DIR=$W/logs-rss \
  /usr/bin/time -v -o "$W/rss/all.time" "$ALL_BIN" $ARGS_C >"$W/rss/all.out" 2>&1 &
TPID=$!
declare -A HWM=() NAME=()
TOOL_PID=
NOW_MAX=0   # the largest sum of VmRSS of backup-tool and its children seen at one moment
CPU_MAIN=0  # backup-tool's CPU ticks: its main thread, and the whole process
CPU_PROC=0
# Sampling with shell builtins where it can, so as not to take CPU from the measured run.
proc_kb() { # pid: sets P_HWM and P_RSS (kB) from /proc/PID/status
  local k v rest
  P_HWM=; P_RSS=
  while read -r k v rest; do
    case $k in VmHWM:) P_HWM=$v ;; VmRSS:) P_RSS=$v ;; esac
  done < "/proc/$1/status"
}
ticks_of() { # /proc/.../stat: sets TICKS to utime + stime (the name has no spaces here)
  local st
  read -r -a st < "$1"
  TICKS=$(( st[13] + st[14] ))
}
busy_ticks() { local c; read -r -a c < /proc/stat; echo $(( c[1] + c[2] + c[3] + c[6] + c[7] + c[8] )); }
BUSY_START=$(busy_ticks)
while kill -0 "$TPID" 2>/dev/null; do
  [ -n "$TOOL_PID" ] || TOOL_PID=$(pgrep -P "$TPID" 2>/dev/null | head -n 1 || true)
  if [ -n "$TOOL_PID" ]; then
    now=0
    for pid in "$TOOL_PID" $(pgrep -P "$TOOL_PID" 2>/dev/null || true); do
      { proc_kb "$pid"; } 2>/dev/null || continue
      [ -n "$P_HWM" ] || continue
      # The name after exec (a child caught between fork and exec still has its parent's).
      { read -r comm < "/proc/$pid/comm"; } 2>/dev/null && NAME[$pid]=$comm
      [ "$P_HWM" -gt "${HWM[$pid]:-0}" ] && HWM[$pid]=$P_HWM
      now=$((now + ${P_RSS:-0}))
    done
    [ "$now" -gt "$NOW_MAX" ] && NOW_MAX=$now
    { ticks_of "/proc/$TOOL_PID/task/$TOOL_PID/stat"; } 2>/dev/null && CPU_MAIN=$TICKS
    { ticks_of "/proc/$TOOL_PID/stat"; } 2>/dev/null && CPU_PROC=$TICKS
  fi
  sleep 0.05
done
BUSY=$(( $(busy_ticks) - BUSY_START ))
wait "$TPID" || { tail -n 25 "$W/rss/all.out" >&2; die "backup-all failed in its /usr/bin/time run"; }
maxrss() { sed -n 's/.*Maximum resident set size (kbytes): *\([0-9]*\).*/\1/p' "$1"; }
RSS_TREE=$(maxrss "$W/rss/all.time")
[ -n "$TOOL_PID" ] && [ -n "${HWM[$TOOL_PID]:-}" ] || die "could not sample backup-tool's VmHWM"
RSS_TOOL=${HWM[$TOOL_PID]}
# Per child program, the largest peak of its processes (pg_dump; a short `pg_dump --version`
# probe, if any, is smaller).
declare -A CHILD=()
for pid in "${!HWM[@]}"; do
  [ "$pid" = "$TOOL_PID" ] && continue
  n=${NAME[$pid]:-?}
  [ "${HWM[$pid]}" -gt "${CHILD[$n]:-0}" ] && CHILD[$n]=${HWM[$pid]}
done
RSS_SUM=$RSS_TOOL
CHILD_TEXT=""
for n in "${!CHILD[@]}"; do
  RSS_SUM=$((RSS_SUM + CHILD[$n]))
  CHILD_TEXT+=" + $n $(awk -v k="${CHILD[$n]}" 'BEGIN { printf "%.1f", k / 1024 }')"
done
[ -n "${CHILD[pg_dump]:-}" ] || echo "bench-all: warning: pg_dump's VmHWM was not sampled" >&2

# The run's own account of the overlap: its log (appended under BACKUP_LOG_DIR) and report.
RUN_LOG=$(ls -t "$W"/logs-rss/backup_*.log 2>/dev/null | head -n 1 || true)
[ -n "$RUN_LOG" ] || die "backup-all wrote no run log under $W/logs-rss"
REPORT=$(find "$W/out-rss/reports/orchestration" -name 'backup_report_*.json' | sort | tail -n 1)
[ -n "$REPORT" ] || die "backup-all stored no report"
TIMELINE=$(grep -E 'backup-all started|: backing up|(database|redis): (success|partial|failed)|backup-all (success|partial|failure)' "$RUN_LOG" || true)
COMPONENTS=$(python3 - "$REPORT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for c in r["components"]:
    if c["status"] != "skipped":
        print("    %-9s %-8s %7.2f s" % (c["component"], c["status"], c["elapsed_seconds"]))
print("    %-9s %-8s %7.2f s" % ("run", r["status"], r["duration_seconds"]))
PY
)

# ---------------------------------------------------------------------------------------------
# hyperfine's JSON, without jq: "command" then "mean", "stddev", "user", "system" per result.
stat_of() { # file name field
  awk -v want="$2" -v field="$3" '
    /"command": / { sub(/^[^:]*: "/, ""); sub(/",?[ \t]*$/, ""); cmd = $0; gsub(/\\"/, "\"", cmd) }
    $0 ~ "^ *\"" field "\": " && cmd == want { v = $0; sub(/^[^:]*: */, "", v); sub(/,$/, "", v); print v; exit }
  ' "$1"
}
J=$W/results/all.json
MEAN_A=$(stat_of "$J" "$N_A" mean); MEAN_B=$(stat_of "$J" "$N_B" mean)
MEAN_C=$(stat_of "$J" "$N_C" mean); MEAN_D=$(stat_of "$J" "$N_D" mean)
for v in MEAN_A MEAN_B MEAN_C MEAN_D; do
  [[ ${!v} =~ ^[0-9.eE+-]+$ ]] || die "could not read $v from hyperfine's JSON"
done

row() { # name
  local name=$1 mean sd user sys
  mean=$(stat_of "$J" "$name" mean); sd=$(stat_of "$J" "$name" stddev)
  user=$(stat_of "$J" "$name" user); sys=$(stat_of "$J" "$name" system)
  awk -v n="$name" -v m="$mean" -v s="$sd" -v u="$user" -v y="$sys" 'BEGIN {
    sd = (s == "null" || s == "") ? "-" : sprintf("%.2f", s)
    printf "  %-40s %8.2f s  +- %5s  %8.2f s\n", n, m, sd, u + y }'
}
# Ratio of two hyperfine means and its 1-sigma uncertainty from their standard deviations.
ratio() { # name_a name_b -> "ratio error"
  local ma sa mb sb
  ma=$(stat_of "$J" "$1" mean); sa=$(stat_of "$J" "$1" stddev)
  mb=$(stat_of "$J" "$2" mean); sb=$(stat_of "$J" "$2" stddev)
  awk -v ma="$ma" -v sa="$sa" -v mb="$mb" -v sb="$sb" 'BEGIN {
    if (sa == "null") sa = 0; if (sb == "null") sb = 0
    r = ma / mb; printf "%.2f %.2f", r, r * sqrt((sa / ma) ^ 2 + (sb / mb) ^ 2) }'
}
# PASS when the ratio is within the limit; a miss smaller than 1 sigma is marked as noise.
verdict() { # "ratio error" limit
  awk -v r="${1%% *}" -v e="${1##* }" -v t="$2" 'BEGIN {
    if (r <= t) print "PASS"; else if (r - e <= t) print "FAIL (within 1 sigma)"; else print "FAIL" }'
}
HZ=$(getconf CLK_TCK)
secs() { awk -v t="$1" -v h="$HZ" 'BEGIN { printf "%.2f", t / h }'; }
kb_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

if awk -v a="$MEAN_A" -v b="$MEAN_B" 'BEGIN { exit !(a >= b) }'; then
  N_SLOW=$N_A; MEAN_SLOW=$MEAN_A; N_FAST=$N_B; MEAN_FAST=$MEAN_B
else
  N_SLOW=$N_B; MEAN_SLOW=$MEAN_B; N_FAST=$N_A; MEAN_FAST=$MEAN_A
fi
R_C=$(ratio "$N_C" "$N_SLOW")
R_D=$(ratio "$N_D" "$N_SLOW")
# How much of the faster component's time the concurrent run hid: 100% = perfect overlap
# ((c) = slower alone), 0% = none ((c) = (a) + (b)).
HIDDEN=$(awk -v a="$MEAN_A" -v b="$MEAN_B" -v c="$MEAN_C" -v f="$MEAN_FAST" \
  'BEGIN { printf "%.0f", 100 * (a + b - c) / f }')
RSS_LIMIT_KB=$((96 * 1024))
rss_verdict() { [ "$1" -lt "$RSS_LIMIT_KB" ] && echo PASS || echo FAIL; }
BENCH_END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

{
  say "results"
  echo "data: database scale $SCALE, plain dump $DUMP_BYTES bytes ($(mb "$DUMP_BYTES") MB, target $DB_MB MB);"
  echo "      Redis $(redis-cli -p "$REDIS_PORT" dbsize) keys, RDB $RDB_BYTES bytes ($(mb "$RDB_BYTES") MB, target $REDIS_MB MB)"
  echo "machine: $NPROC cores; load average (1/5/15 min) at start $BENCH_START_LOAD, at end $BENCH_END_LOAD"
  echo "runs: $RUNS timed per command (+1 warmup), each into a fresh empty backup directory;"
  echo "      BACKUP_COMPRESSION=gzip, encrypted, one key file; times are hyperfine means"
  echo
  echo "  command                                      mean        +-sd   user+sys"
  row "$N_A"; row "$N_B"; row "$N_C"; row "$N_D"
  echo
  echo "  (c) vs alone: slower alone $(printf '%.2f' "$MEAN_SLOW") s, sum alone $(awk -v a="$MEAN_A" -v b="$MEAN_B" 'BEGIN { printf "%.2f", a + b }') s, (c) $(printf '%.2f' "$MEAN_C") s: $HIDDEN% of the faster one's time hidden"
  echo
  echo "  the /usr/bin/time run of (c): components (from its report)"
  echo "$COMPONENTS"
  echo "  its CPU: backup-tool's main thread $(secs "$CPU_MAIN") s, its other threads $(secs $((CPU_PROC - CPU_MAIN))) s (sampled);"
  echo "    the machine was busy $(secs "$BUSY") s in all (every process: pg_dump, the servers, other"
  echo "    load), so on $NPROC cores no overlap could have made this run shorter than $(awk -v b="$BUSY" -v n="$NPROC" -v h="$HZ" 'BEGIN { printf "%.2f", b / h / n }') s"
  echo "  its log ($(basename "$RUN_LOG") in BACKUP_LOG_DIR):"
  echo "$TIMELINE" | sed 's/^/    /'
  echo
  echo "  peak RSS of the /usr/bin/time run of (c) (MiB)"
  printf '    %-62s %7s\n' "backup-tool (backup-all) own VmHWM, sampled" "$(kb_mib "$RSS_TOOL")"
  for n in "${!CHILD[@]}"; do
    printf '    %-62s %7s\n' "child $n VmHWM, sampled" "$(kb_mib "${CHILD[$n]}")"
  done
  printf '    %-62s %7s\n' "whole run: sum of those peaks (backup-tool$CHILD_TEXT)" "$(kb_mib "$RSS_SUM")"
  printf '    %-62s %7s\n' "largest sum of their VmRSS at one sampled moment" "$(kb_mib "$NOW_MAX")"
  printf '    %-62s %7s\n' "/usr/bin/time -v max RSS (largest single process of the tree)" "$(kb_mib "$RSS_TREE")"

  say "summary"
  printf '  %-44s %-24s %-12s %8s  %s\n' "target" "measured" "ratio +-1sd" "limit" "verdict"
  printf '  %-44s %-24s %-12s %8s  %s\n' "backup-all (c) vs slower alone ${N_SLOW%% *}" \
    "$(printf '%.2f s vs %.2f s' "$MEAN_C" "$MEAN_SLOW")" "${R_C% *}x +-${R_C#* }" "<= 1.15x" "$(verdict "$R_C" 1.15)"
  printf '  %-44s %-24s %-12s %8s  %s\n' "  (info) (d) verify hash + prune vs ${N_SLOW%% *}" \
    "$(printf '%.2f s vs %.2f s' "$MEAN_D" "$MEAN_SLOW")" "${R_D% *}x +-${R_D#* }" "" ""
  printf '  %-44s %-24s %-12s %8s  %s\n' "peak RSS whole run (backup-tool + pg_dump)" \
    "$(kb_mib "$RSS_SUM") MiB" "" "< 96 MiB" "$(rss_verdict "$RSS_SUM")"
  cat <<EOF

Notes: means of $RUNS runs on $NPROC cores. (c) runs only the two concurrent components
(--skip config --skip logs --verify none --no-prune); (d) adds the hash verification of each
stored copy and retention, as a nightly run does, and has no target. "ratio +-1sd" is the
ratio of means with its 1-sigma error from the runs' standard deviations; "within 1 sigma":
the miss is smaller than the spread, rerun with more --runs before trusting it. Peak RSS
"whole run" adds the sampled high-water marks (VmHWM) of backup-tool (the backup-all
launcher execs it: same PID) and of its child pg_dump, which run at the same time: an upper
bound of what the run holds at once. /usr/bin/time -v alone reports only the largest single
process. Not counted: the PostgreSQL backend serving pg_dump and redis-server's fork that
produces the RDB (the servers' processes, there without backup-all too). user+sys includes
pg_dump's, not the servers'. backup-tool's main thread: when it is busy for about the whole
run, the compression, encryption and hashing of both components ran on that one thread, one
after the other, whatever the number of cores.
EOF
} | tee "$W/results/summary.txt"
