#!/usr/bin/env bash
# Benchmark: streaming write throughput and peak memory of the S3 sink against the local sink.
#
# Usage: bash scripts/bench-s3.sh [--size-gib F] [--part-size SIZE] [--concurrency N] [-h|--help]
#   --size-gib F       GiB of incompressible pseudo-random data per run, default 2 (may be a
#                      fraction, e.g. 0.2)
#   --part-size SIZE   BACKUP_S3_PART_SIZE for the S3 runs, default 8MiB (bytes, or K/KiB,
#                      M/MiB, G/GiB)
#   --concurrency N    BACKUP_S3_CONCURRENCY for the S3 runs, default 4
#   -h, --help         this text
# Environment: BENCH_DIR  work directory, default ./bench-work-s3. Created and removed at the
#                         end when missing; when it already exists, only the data is removed
#                         and the per-run logs stay in $BENCH_DIR/logs. Both the S3
#                         server's files ($BENCH_DIR/s3-server, via TMPDIR) and the local
#                         sink ($BENCH_DIR/local) live there, so both write to the same disk.
#              RUNS       runs per destination, default 2 (the mean is reported)
#
# Steps: builds examples/s3_server.rs and examples/sink_throughput.rs in release once; starts
# s3_server in the background (a loopback s3s + s3s-fs server, bucket `bench`) and reads its
# `export` lines until READY (it is stopped on exit); runs sink_throughput to local:DIR and to
# s3, RUNS times each, under /usr/bin/time -v; prints a table with the mean MiB/s, the mean
# peak RSS ("Maximum resident set size"), and for S3 the memory bound
# part_size x (concurrency + 1) + 32 MiB with PASS/FAIL, plus the S3/local throughput ratio
# (informational, no target).
#
# Caveat: s3s-fs writes every part to a file and concatenates the parts into the object on
# CompleteMultipartUpload, so the S3 figure includes the server's own disk work (each byte is
# written twice, on the same disk, and the server shares the CPUs); a real S3 endpoint behaves
# differently. Exit status 0 when every step ran (a FAIL is reported, not an error).
set -euo pipefail

usage() { sed -n '2,/^set -euo pipefail/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

SIZE_GIB=2
PART_SIZE=8MiB
CONCURRENCY=4
RUNS=${RUNS:-2}
while [ $# -gt 0 ]; do
  case $1 in
    --size-gib) SIZE_GIB=${2:?--size-gib needs a value}; shift 2 ;;
    --size-gib=*) SIZE_GIB=${1#*=}; shift ;;
    --part-size) PART_SIZE=${2:?--part-size needs a value}; shift 2 ;;
    --part-size=*) PART_SIZE=${1#*=}; shift ;;
    --concurrency) CONCURRENCY=${2:?--concurrency needs a value}; shift 2 ;;
    --concurrency=*) CONCURRENCY=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-s3: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SIZE_GIB =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] || { echo "bench-s3: --size-gib takes a number" >&2; exit 2; }
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || { echo "bench-s3: --concurrency takes a whole number >= 1" >&2; exit 2; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "bench-s3: RUNS takes a whole number >= 1" >&2; exit 2; }

# Part size in bytes (same suffixes as BACKUP_S3_PART_SIZE; the sink validates the range).
part_bytes() {
  local v=${1// /} n suffix
  [[ $v =~ ^([0-9]+)([A-Za-z]*)$ ]] || return 1
  n=${BASH_REMATCH[1]}; suffix=${BASH_REMATCH[2],,}
  case $suffix in
    ''|b) echo "$n" ;;
    k|kib) echo $((n * 1024)) ;;
    m|mib) echo $((n * 1024 * 1024)) ;;
    g|gib) echo $((n * 1024 * 1024 * 1024)) ;;
    kb) echo $((n * 1000)) ;;
    mb) echo $((n * 1000 * 1000)) ;;
    gb) echo $((n * 1000 * 1000 * 1000)) ;;
    *) return 1 ;;
  esac
}
PART_BYTES=$(part_bytes "$PART_SIZE") || { echo "bench-s3: bad --part-size $PART_SIZE" >&2; exit 2; }

cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
die() { echo "bench-s3: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time, or scripts/setup.sh)"

BENCH_DIR=${BENCH_DIR:-./bench-work-s3}
CREATED_DIR=0
[ -e "$BENCH_DIR" ] || CREATED_DIR=1
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
mkdir -p "$BENCH_DIR/s3-server" "$BENCH_DIR/local" "$BENCH_DIR/logs"

SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$BENCH_DIR/s3-server" "$BENCH_DIR/local"
  # Logs are kept only when the directory existed before (so a run leaves no litter).
  if [ "$CREATED_DIR" = 1 ]; then rm -rf "$BENCH_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "build (release)"
cargo build --release --example s3_server --example sink_throughput
BIN=target/release/examples

say "start the loopback S3 server (files under $BENCH_DIR/s3-server)"
# A coprocess: its stdin is a pipe held by this script (EOF when we exit), its stdout ours to read.
coproc SERVER { TMPDIR="$BENCH_DIR/s3-server" exec "$BIN/s3_server" --bucket bench 2>"$BENCH_DIR/logs/s3_server.log"; }
SERVER_PID=$SERVER_PID
SERVER_ENV=()
while IFS= read -r -t 60 line <&"${SERVER[0]}"; do
  case $line in
    READY) break ;;
    export\ *=*) SERVER_ENV+=("${line#export }") ;;
    \#*) echo "   ${line#\# }" ;;
  esac
done
[ "${line:-}" = READY ] || die "s3_server did not become ready; see $BENCH_DIR/logs/s3_server.log"
for assignment in "${SERVER_ENV[@]}"; do
  export "${assignment?}"
  case $assignment in BACKUP_S3_ENDPOINT=*) echo "   endpoint ${assignment#*=}" ;; esac
done
export BACKUP_S3_PART_SIZE=$PART_SIZE BACKUP_S3_CONCURRENCY=$CONCURRENCY

# run NAME TARGET I: one timed run; appends "mib_s rss_kib" to $BENCH_DIR/logs/NAME.results
run() {
  local name=$1 target=$2 i=$3 out time_log mib rss
  out="$BENCH_DIR/logs/$name.$i.out"; time_log="$BENCH_DIR/logs/$name.$i.time"
  /usr/bin/time -v -o "$time_log" "$BIN/sink_throughput" --size-gib "$SIZE_GIB" --to "$target" >"$out"
  mib=$(awk -F': ' '$1 == "MiB/s" {print $2}' "$out")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$time_log")
  [ -n "$mib" ] && [ -n "$rss" ] || die "no figures from $name run $i (see $out, $time_log)"
  printf '   %-5s run %d: %8.1f MiB/s  %6.1f s  peak RSS %6.1f MiB (VmHWM %6.1f MiB)\n' "$name" "$i" "$mib" \
    "$(awk -F': ' '$1 == "seconds" {print $2}' "$out")" "$(awk "BEGIN {print $rss / 1024}")" \
    "$(awk -F': ' '$1 == "peak_rss_kib" {print $2 / 1024}' "$out")"
  echo "$mib $rss" >>"$BENCH_DIR/logs/$name.results"
}

rm -f "$BENCH_DIR"/logs/*.results
say "sink_throughput: $SIZE_GIB GiB, $RUNS runs per destination (S3: part size $PART_SIZE, concurrency $CONCURRENCY)"
for i in $(seq 1 "$RUNS"); do
  run local "local:$BENCH_DIR/local" "$i"
  run s3 s3 "$i"
done

mean() { awk -v col="$2" '{s += $col; n++} END {printf "%.1f", s / n}' "$BENCH_DIR/logs/$1.results"; }
LOCAL_MIB=$(mean local 1); LOCAL_RSS=$(awk '{s += $2; n++} END {printf "%.1f", s / n / 1024}' "$BENCH_DIR/logs/local.results")
S3_MIB=$(mean s3 1); S3_RSS=$(awk '{s += $2; n++} END {printf "%.1f", s / n / 1024}' "$BENCH_DIR/logs/s3.results")
S3_RSS_MAX=$(awk '$2 > m {m = $2} END {printf "%.1f", m / 1024}' "$BENCH_DIR/logs/s3.results")
BOUND=$(awk -v p="$PART_BYTES" -v c="$CONCURRENCY" 'BEGIN {printf "%.1f", p * (c + 1) / 1048576 + 32}')
VERDICT=$(awk -v r="$S3_RSS_MAX" -v b="$BOUND" 'BEGIN {print (r <= b) ? "PASS" : "FAIL"}')
RATIO=$(awk -v s="$S3_MIB" -v l="$LOCAL_MIB" 'BEGIN {printf "%.2f", s / l}')

say "summary: $SIZE_GIB GiB, mean of $RUNS runs"
printf '%-34s %10s %14s %26s\n' destination "MiB/s" "peak RSS MiB" "RSS bound MiB"
printf '%-34s %10s %14s %26s\n' "local (LocalSink, fsync)" "$LOCAL_MIB" "$LOCAL_RSS" "-"
printf '%-34s %10s %14s %26s\n' "s3 (S3Sink -> s3s-fs loopback)" "$S3_MIB" "$S3_RSS" \
  "$BOUND (max $S3_RSS_MAX) $VERDICT"
echo
echo "RSS bound = part_size x (concurrency + 1) + 32 MiB = $PART_SIZE x ($CONCURRENCY + 1) + 32 MiB = $BOUND MiB (checked against the largest S3 run)"
echo "S3/local throughput: $RATIO (informational, no target; the loopback server writes every byte twice on the same disk)"
