#!/usr/bin/env bash
# Benchmark: backup-redis against what the old script did,
#   redis-cli --rdb FILE && gzip FILE
# on a throwaway redis-server filled with a generated data set of a chosen size.
#
# Usage: bash scripts/bench-redis.sh [--size-gb N] [--runs N] [--keep] [-h|--help]
#   --size-gb N  approximate size of the data set (sum of values) in GB, default 2
#   --runs N     timed runs per command (hyperfine --runs), default $RUNS or 3
#   --keep       keep the work directory (RDB files, backups, hyperfine JSON, logs)
#   -h, --help   this text
# Environment: BENCH_DIR  work directory, default bench-redis-work in the repository root (must
#                         not exist yet; removed at the end unless --keep)
#              RUNS       default for --runs
#
# Steps: installs hyperfine, /usr/bin/time, redis-server and redis-tools when missing
# (scripts/setup.sh); builds the release binaries; starts redis-server on 127.0.0.1 on a free
# port with a random password (given to the tools through REDISCLI_AUTH / REDIS_PASSWORD only,
# never a command line), no persistence, repl-diskless-sync-delay 0 (the default 5 s delay would
# only add the same constant to every run); loads the data set (python3 -> redis-cli --pipe:
# 70% strings of 0.5-4 KB of base64 text, 30% hashes of 20 fields), then times:
#   (ref) redis-cli --rdb FILE                  the transfer alone
#   (a)   redis-cli --rdb FILE && gzip FILE      the old script
#   (b)   backup-redis --no-encrypt              same output format as (a)
#   (c)   backup-redis                           gzip + AES-256-CBC, the default
#   (d)   backup-redis --compression zstd        encrypted
#   (e)   restore-redis --latest --dry-run       verify + decrypt + gunzip + parse every key
# plus one run of (c) and (e) under /usr/bin/time -v for peak RSS. Prints a summary with PASS
# or FAIL against the targets: (b) and (c) not slower than (a); peak RSS below 64 MiB whatever
# the data size. Exit status 0 when every step ran (a missed target is reported, not an error).
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

SIZE_GB=2
RUNS=${RUNS:-3}
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --size-gb) SIZE_GB=${2:?--size-gb needs a value}; shift 2 ;;
    --size-gb=*) SIZE_GB=${1#*=}; shift ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-redis: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SIZE_GB =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench-redis: --size-gb takes a number" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench-redis: --runs takes a whole number >= 1" >&2; exit 2; }

cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
die() { echo "bench-redis: $*" >&2; exit 1; }

say "setup"
BACKUP_SETUP_BENCH=1 bash scripts/setup.sh
for tool in hyperfine redis-server redis-cli gzip python3 openssl; do
  command -v "$tool" >/dev/null || die "$tool is missing after scripts/setup.sh"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is missing after scripts/setup.sh"

say "build (release)"
cargo build --locked --release -p backup-cli --bins
TARGET_DIR=$(cargo metadata --locked --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BACKUP_BIN=$TARGET_DIR/release/backup-redis
RESTORE_BIN=$TARGET_DIR/release/restore-redis
for b in "$BACKUP_BIN" "$RESTORE_BIN"; do [ -x "$b" ] || die "$b was not built"; done

W=${BENCH_DIR:-./bench-redis-work}
[ -e "$W" ] && die "work directory $W exists; remove it or set BENCH_DIR to a new path"
mkdir -p "$W"
W=$(cd "$W" && pwd)
REDIS_PID=
cleanup() {
  local status=$?
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ -f "$W/redis.log" ]; then
    echo "bench-redis: failed; last lines of the server log:" >&2
    tail -n 15 "$W/redis.log" >&2 || true
  fi
  if [ "$KEEP" = 1 ]; then echo "bench-redis: work directory kept: $W" >&2; else rm -rf "$W"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unset REDIS_URL REDIS_USERNAME BACKUP_CONFIG BACKUP_COMPRESSION BACKUP_COMPRESSION_LEVEL \
  BACKUP_S3_BUCKET BACKUP_KEYRING_DIR BACKUP_REDIS_ENCRYPT BACKUP_REDIS_METHOD RUST_LOG

say "redis-server (work directory $W)"
mkdir -p "$W/data" "$W/results" "$W/rss"
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + RANDOM % 40000))
  port_in_use "$p" || { PORT=$p; break; }
done
[ -n "$PORT" ] || die "no free port"
REDIS_PASSWORD=$(openssl rand -hex 16)
# The password goes in through a config file read by the server, not its command line.
( umask 077; printf 'requirepass %s\n' "$REDIS_PASSWORD" > "$W/redis.conf" )
redis-server "$W/redis.conf" --port "$PORT" --bind 127.0.0.1 --dir "$W/data" \
  --save "" --appendonly no --repl-diskless-sync yes --repl-diskless-sync-delay 0 \
  --logfile "$W/redis.log" --daemonize no &
REDIS_PID=$!
export REDISCLI_AUTH=$REDIS_PASSWORD REDIS_PASSWORD REDIS_HOST=127.0.0.1 REDIS_PORT=$PORT
for _ in $(seq 1 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" ping >/dev/null || die "redis-server did not start"
redis-cli -p "$PORT" info server | grep -E '^redis_version' | tr -d '\r'

say "data: ~${SIZE_GB} GB"
load_started=$SECONDS
python3 - "$SIZE_GB" <<'PY' | redis-cli -p "$PORT" --pipe >"$W/load.log"
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
tail -n 2 "$W/load.log"
echo "loaded in $((SECONDS - load_started)) s: $(redis-cli -p "$PORT" dbsize) keys, $(redis-cli -p "$PORT" info memory | grep '^used_memory_human' | tr -d '\r')"

KEY=$W/encryption.key
( umask 077; openssl rand -base64 48 > "$KEY" )
export BACKUP_ENCRYPTION_KEY_FILE=$KEY

say "timings (hyperfine, $RUNS runs each)"
hf() { local name=$1; shift; hyperfine --runs "$RUNS" --export-json "$W/results/$name.json" "$@"; }
hf ref --prepare "rm -f $W/ref.rdb" -n 'redis-cli --rdb' "redis-cli -p $PORT --rdb $W/ref.rdb >/dev/null"
RDB_BYTES=$(stat -c %s "$W/ref.rdb")
hf old --prepare "rm -f $W/old.rdb $W/old.rdb.gz" -n 'old: redis-cli --rdb && gzip' \
  "redis-cli -p $PORT --rdb $W/old.rdb >/dev/null && gzip -f $W/old.rdb"
hf plain --prepare "rm -rf $W/plain" -n 'backup-redis --no-encrypt' \
  "BACKUP_LOCAL_DIR=$W/plain $BACKUP_BIN --quiet --no-encrypt --no-latest"
hf gzip --prepare "rm -rf $W/gzip" -n 'backup-redis (gzip, encrypted)' \
  "BACKUP_LOCAL_DIR=$W/gzip $BACKUP_BIN --quiet --no-latest"
hf zstd --prepare "rm -rf $W/zstd" -n 'backup-redis --compression zstd' \
  "BACKUP_LOCAL_DIR=$W/zstd $BACKUP_BIN --quiet --no-latest --compression zstd"
hf dryrun -n 'restore-redis --latest --dry-run' \
  "BACKUP_LOCAL_DIR=$W/gzip $RESTORE_BIN --quiet --latest --dry-run >/dev/null"

say "peak RSS"
rm -rf "$W/rss-backup"
BACKUP_LOCAL_DIR=$W/rss-backup /usr/bin/time -v "$BACKUP_BIN" --quiet --no-latest \
  >/dev/null 2>"$W/rss/backup.txt"
BACKUP_LOCAL_DIR=$W/gzip /usr/bin/time -v "$RESTORE_BIN" --quiet --latest --dry-run \
  >/dev/null 2>"$W/rss/dryrun.txt"
rss_mib() { awk '/Maximum resident set size/ {printf "%.1f", $6/1024}' "$1"; }
RSS_BACKUP=$(rss_mib "$W/rss/backup.txt")
RSS_DRYRUN=$(rss_mib "$W/rss/dryrun.txt")

mean() { python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"; }
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
verdict() { python3 -c 'import sys; print("PASS" if float(sys.argv[1]) <= float(sys.argv[2]) else "FAIL")' "$1" "$2"; }
T_REF=$(mean "$W/results/ref.json"); T_OLD=$(mean "$W/results/old.json")
T_PLAIN=$(mean "$W/results/plain.json"); T_GZIP=$(mean "$W/results/gzip.json")
T_ZSTD=$(mean "$W/results/zstd.json"); T_DRY=$(mean "$W/results/dryrun.json")
size_of() { find "$1" -path '*/redis/redis_backup_*' ! -name '*.json' -printf '%s\n' | head -n 1; }
MB() { python3 -c 'import sys; print("%.1f MB" % (int(sys.argv[1]) / 1e6))' "$1"; }
MBS() { python3 -c 'import sys; print("%.0f MB/s" % (int(sys.argv[1]) / 1e6 / float(sys.argv[2])))' "$1" "$2"; }

say "summary ($(nproc) cores, load at start $(cut -d' ' -f1-3 /proc/loadavg))"
echo "RDB size $(MB "$RDB_BYTES"); old .rdb.gz $(MB "$(stat -c %s "$W/old.rdb.gz")"); ours gzip $(MB "$(size_of "$W/gzip")"), zstd $(MB "$(size_of "$W/zstd")")"
printf '%-44s %8s  %10s  %s\n' "command" "mean s" "throughput" "vs old"
printf '%-44s %8s  %10s  %s\n' "redis-cli --rdb (transfer only)" "$T_REF" "$(MBS "$RDB_BYTES" "$T_REF")" "$(ratio "$T_REF" "$T_OLD")x"
printf '%-44s %8s  %10s  %s\n' "old: redis-cli --rdb && gzip" "$T_OLD" "$(MBS "$RDB_BYTES" "$T_OLD")" "1.00x"
printf '%-44s %8s  %10s  %s\n' "backup-redis --no-encrypt" "$T_PLAIN" "$(MBS "$RDB_BYTES" "$T_PLAIN")" "$(ratio "$T_PLAIN" "$T_OLD")x  $(verdict "$T_PLAIN" "$T_OLD") (<= 1.00x)"
printf '%-44s %8s  %10s  %s\n' "backup-redis (gzip + AES)" "$T_GZIP" "$(MBS "$RDB_BYTES" "$T_GZIP")" "$(ratio "$T_GZIP" "$T_OLD")x  $(verdict "$T_GZIP" "$T_OLD") (<= 1.00x)"
printf '%-44s %8s  %10s  %s\n' "backup-redis --compression zstd (AES)" "$T_ZSTD" "$(MBS "$RDB_BYTES" "$T_ZSTD")" "$(ratio "$T_ZSTD" "$T_OLD")x"
printf '%-44s %8s  %10s\n' "restore-redis --dry-run (verify+parse)" "$T_DRY" "$(MBS "$RDB_BYTES" "$T_DRY")"
echo "peak RSS: backup-redis $RSS_BACKUP MiB $(verdict "$RSS_BACKUP" 64) (< 64 MiB); restore-redis --dry-run $RSS_DRYRUN MiB $(verdict "$RSS_DRYRUN" 64) (< 64 MiB)"
