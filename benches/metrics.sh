#!/usr/bin/env bash
# What metrics cost (issue 27): CPU-s side by side, with and without them, in one run.
#   1. `sentiflow stream` (1 worker, 4-shard kinesalite stream, 1 s trigger) under a steady feed of
#      --rate records/s for --seconds: plain, then with --metrics-addr scraped every second by curl
#      (a Prometheus' default is 15 s; every second is the worst case) and --metrics emf every 10 s.
#   2. `sentiflow score` on the sample (5,000 rows), plain and with --metrics emf.
# The counters themselves are always counted (atomics where the summary counts): "without" is a run
# that serves and prints nothing.
# Runs alternate (plain, metrics, plain, …) --repeat times; each pair's CPU-s is printed, and the medians.
#   bash benches/metrics.sh [--seconds 60] [--rate 1000] [--repeat 3] [--stream-scorer lexicon] [--score-scorer onnx]
#                           [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=60
RATE=1000
REPEAT=3
STREAM_SCORER=lexicon
SCORE_SCORER=onnx
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --stream-scorer) STREAM_SCORER=$2; shift 2 ;;
    --score-scorer) SCORE_SCORER=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh 2>/dev/null
export SENTIFLOW_KINESIS_PORT=${SENTIFLOW_KINESIS_PORT:-4597} SENTIFLOW_MOTO_PORT=${SENTIFLOW_MOTO_PORT:-4596}
# shellcheck source=scripts/aws-local.sh
source scripts/aws-local.sh
set -euo pipefail
OUT=$(mktemp -d)
trap 'stop_aws_local; rm -rf "$OUT"' EXIT
export SENTIFLOW_NO_PROGRESS=1

cpu_of() { awk '{ printf "%.2f", $2 + $3 }' "$1"; }

echo "# metrics overhead, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores (shared with kinesalite and the producer), binary $BIN"
printf '%-44s | %9s %9s | %7s\n' run "plain CPU-s" "metrics" overhead
stream_run() { # name, extra args...: prints the worker's CPU-s
  local name=$1; shift
  "$SENTIFLOW_TOOLS/venv/bin/python" - "$name" <<'PY'
import sys, time, boto3, os
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
k.create_stream(StreamName=sys.argv[1], ShardCount=4)
while k.describe_stream_summary(StreamName=sys.argv[1])["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
    time.sleep(0.05)
PY
  /usr/bin/time -f '%e %U %S' -o "$OUT/$name.time" "$BIN" stream --from "kinesis://$name" --to "$OUT/$name" \
    --scorer "$STREAM_SCORER" --window 10s --watermark 5s --trigger 1s "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  local tpid=$!
  sleep 1
  local spid
  spid=$(pgrep -P "$tpid" | head -1)
  local scraper=""
  if [ -n "${PORT:-}" ]; then
    ( while kill -0 "$spid" 2>/dev/null; do curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null || true; sleep 1; done ) &
    scraper=$!
  fi
  "$BIN" generate --rows $((RATE * SECS)) --rate "$RATE" --start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --span "${SECS}s" --to "kinesis://$name" >/dev/null
  sleep 5
  kill -TERM "$spid"
  wait "$tpid" || true
  [ -z "$scraper" ] || kill "$scraper" 2>/dev/null || true
  grep -q "$((RATE * SECS)) records" "$OUT/$name.out" || echo "# $name: not every record read: $(head -1 "$OUT/$name.out")" >&2
  cpu_of "$OUT/$name.time"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
row() { # label plain-list metrics-list
  local a b
  a=$(echo "$2" | median)
  b=$(echo "$3" | median)
  printf '%-44s | %9s %9s | %7s   (runs: %s | %s)\n' "$1" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.1f%%", 100 * (b - a) / a }')" "$2" "$3"
}
P="" M=""
for i in $(seq 1 "$REPEAT"); do
  PORT=""
  P="$P $(stream_run "plain$i")"
  PORT=$((20000 + RANDOM % 20000))
  M="$M $(stream_run "metrics$i" --metrics-addr "$PORT" --metrics emf --emf-every 10s)"
done
PORT=""
row "stream $STREAM_SCORER, $RATE rec/s, ${SECS}s, scraped 1/s (median)" "$P" "$M"

"$BIN" generate --rows 5000 --seed 42 --to "$OUT/sample" >/dev/null
P="" M=""
for i in $(seq 1 "$REPEAT"); do
  /usr/bin/time -f '%e %U %S' -o "$OUT/t" "$BIN" score --scorer "$SCORE_SCORER" --input "$OUT/sample" --out "$OUT/s$i" >/dev/null
  P="$P $(cpu_of "$OUT/t")"
  /usr/bin/time -f '%e %U %S' -o "$OUT/t" "$BIN" score --scorer "$SCORE_SCORER" --input "$OUT/sample" --out "$OUT/e$i" --metrics emf >/dev/null
  M="$M $(cpu_of "$OUT/t")"
done
row "score $SCORE_SCORER, the sample (5,000 rows) (median)" "$P" "$M"
