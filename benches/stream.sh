#!/usr/bin/env bash
# Streaming mode under a steady feed: `sentiflow generate --rate R --to kinesis://` into kinesalite
# while `sentiflow stream` (1 s trigger, 10 s windows, 5 s watermark) runs, for the lexicon and the
# ONNX scorer at 1k and 10k records/s. Prints, per run: the rate the producer reached, what the stream
# read, its latency from a record's arrival on the stream to its micro-batch being durable
# (p50/p95/p99/max, printed by `stream` itself), its CPU-s and its RSS sampled every 5 s.
#   bash benches/stream.sh [--seconds 60] [--rates "1000 10000"] [--scorers "lexicon onnx"] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=60
RATES="1000 10000"
SCORERS="lexicon onnx"
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --scorers) SCORERS=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh 2>/dev/null
export SENTIFLOW_KINESIS_PORT=${SENTIFLOW_KINESIS_PORT:-4587} SENTIFLOW_MOTO_PORT=${SENTIFLOW_MOTO_PORT:-4586}
# shellcheck source=scripts/aws-local.sh
source scripts/aws-local.sh
set -euo pipefail
OUT=$(mktemp -d)
trap 'stop_aws_local; rm -rf "$OUT"' EXIT
export SENTIFLOW_NO_PROGRESS=1

echo "# streaming bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by kinesalite, the producer and the stream; ${SECONDS_PER_RUN}s per run; binary $BIN"
printf '%-8s %7s | %9s %9s | %-44s | %7s | %s\n' scorer rate produced "read/s" "latency arrival->durable p50/p95/p99/max ms" CPU-s "RSS MiB (first..last, max)"
for scorer in $SCORERS; do
  for rate in $RATES; do
    name="b${scorer}${rate}"
    "$SENTIFLOW_TOOLS/venv/bin/python" - "$name" <<'PY'
import sys, time, boto3, os
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
k.create_stream(StreamName=sys.argv[1], ShardCount=4)
while k.describe_stream_summary(StreamName=sys.argv[1])["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
    time.sleep(0.05)
PY
    /usr/bin/time -f '%e %U %S' -o "$OUT/$name.time" "$BIN" stream --from "kinesis://$name" --to "$OUT/$name" --scorer "$scorer" \
      --window 10s --watermark 5s --trigger 1s >"$OUT/$name.out" 2>"$OUT/$name.err" &
    TPID=$!
    sleep 1
    SPID=$(pgrep -P $TPID | head -1)
    : >"$OUT/$name.rss"
    ( while kill -0 "$SPID" 2>/dev/null; do ps -o rss= -p "$SPID" >>"$OUT/$name.rss" 2>/dev/null; sleep 5; done ) &
    SAMPLER=$!
    start=$(date +%s.%N)
    "$BIN" generate --rows $((rate * SECONDS_PER_RUN)) --rate "$rate" --start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      --span "${SECONDS_PER_RUN}s" --to "kinesis://$name" >"$OUT/$name.gen"
    took=$(python3 -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$start")
    sleep 8   # let the stream drain what is left
    kill -TERM "$SPID"
    wait $TPID || true
    kill $SAMPLER 2>/dev/null || true
    read -r _wall user sys <"$OUT/$name.time"
    records=$(grep -oE '[0-9]+ records' "$OUT/$name.out" | head -1 | cut -d' ' -f1)
    lat=$(grep -oE 'p50 [0-9]+ ms, p95 [0-9]+ ms, p99 [0-9]+ ms, max [0-9]+ ms' "$OUT/$name.out" | sed 's/ ms//g; s/p50 //; s/, p95 /\//; s/, p99 /\//; s/, max /\//')
    rss=$(python3 -c "import sys; v=[int(x)//1024 for x in open(sys.argv[1]).read().split()]; print(f'{v[0]}..{v[-1]}, max {max(v)}' if v else '-')" "$OUT/$name.rss")
    python3 - "$scorer" "$rate" "$((rate * SECONDS_PER_RUN))" "$took" "${records:-0}" "${lat:--}" "$user" "$sys" "$rss" <<'PY'
import sys
scorer, rate, n, took, rec, lat, u, s, rss = sys.argv[1:]
print(f"{scorer:<8} {int(rate):>7} | {int(n)/float(took):>9,.0f} {int(rec)/float(took):>9,.0f} | {lat:<44} | {float(u)+float(s):>7.1f} | {rss}")
PY
    grep -h "^streamed" "$OUT/$name.out" | sed 's/^/#   /'
    python3 -c "import sys; v=[int(x)//1024 for x in open(sys.argv[1]).read().split()]; print('#   RSS MiB each minute: ' + ' '.join(str(x) for x in v[::12]))" "$OUT/$name.rss"
  done
done
