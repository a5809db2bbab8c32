#!/usr/bin/env bash
# Streaming mode under a steady feed: `sentiflow generate --rate R --to kinesis://` into kinesalite (4 shards)
# while 1, 2 or 3 `sentiflow stream` workers (1 s trigger, 10 s windows, 5 s watermark) share the stream,
# for the lexicon and the ONNX scorer. Prints, per run: the rate the producer reached, what the workers
# read together, their latency from a record's arrival on the stream to its micro-batch being durable
# (p50/p95/p99/max, printed by each `stream` worker; the worst worker's figure is shown), their CPU-s
# together and per million records, their RSS sampled every 5 s, and the coordination cost: checkpoint
# requests (leases, intents, commits, the emitter) per second over all workers.
#   bash benches/stream.sh [--seconds 60] [--rates "1000 10000"] [--scorers "lexicon onnx"] [--workers "1"]
#                          [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=60
RATES="1000 10000"
SCORERS="lexicon onnx"
WORKERS="1"
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --scorers) SCORERS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
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

echo "# streaming bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by kinesalite, the producer and the workers; ${SECONDS_PER_RUN}s per run; binary $BIN"
printf '%-8s %7s %7s | %9s %9s | %-40s | %7s %9s | %-22s | %s\n' scorer rate workers produced "read/s" \
  "latency p50/p95/p99/max ms (worst worker)" CPU-s "CPU-s/M" "RSS MiB (max per worker)" "checkpoint req/s"
for scorer in $SCORERS; do
  for rate in $RATES; do
    for workers in $WORKERS; do
      name="b${scorer}${rate}w${workers}"
      "$SENTIFLOW_TOOLS/venv/bin/python" - "$name" <<'PY'
import sys, time, boto3, os
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
k.create_stream(StreamName=sys.argv[1], ShardCount=4)
while k.describe_stream_summary(StreamName=sys.argv[1])["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
    time.sleep(0.05)
PY
      TPIDS=() SAMPLERS=()
      for w in $(seq 1 "$workers"); do
        /usr/bin/time -f '%e %U %S' -o "$OUT/$name.$w.time" "$BIN" stream --from "kinesis://$name" --to "$OUT/$name" \
          --scorer "$scorer" --window 10s --watermark 5s --trigger 1s --worker-id "w$w" \
          >"$OUT/$name.$w.out" 2>"$OUT/$name.$w.err" &
        TPIDS+=($!)
      done
      sleep 1
      SPIDS=()
      for w in $(seq 1 "$workers"); do
        SPID=$(pgrep -P "${TPIDS[$((w - 1))]}" | head -1)
        SPIDS+=("$SPID")
        : >"$OUT/$name.$w.rss"
        ( while kill -0 "$SPID" 2>/dev/null; do ps -o rss= -p "$SPID" >>"$OUT/$name.$w.rss" 2>/dev/null; sleep 5; done ) &
        SAMPLERS+=($!)
      done
      start=$(date +%s.%N)
      "$BIN" generate --rows $((rate * SECONDS_PER_RUN)) --rate "$rate" --start "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --span "${SECONDS_PER_RUN}s" --to "kinesis://$name" >"$OUT/$name.gen"
      took=$(python3 -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$start")
      sleep 8   # let the workers drain what is left
      kill -TERM "${SPIDS[@]}"
      for p in "${TPIDS[@]}"; do wait "$p" || true; done
      kill "${SAMPLERS[@]}" 2>/dev/null || true
      python3 - "$OUT" "$name" "$workers" "$scorer" "$rate" "$((rate * SECONDS_PER_RUN))" "$took" <<'PY'
import re, sys
out, name, workers, scorer, rate, n, took = sys.argv[1:]
workers, took = int(workers), float(took)
records, cpu, lats, rss, req = 0, 0.0, [], [], 0
for w in range(1, workers + 1):
    text = open(f"{out}/{name}.{w}.out").read()
    m = re.search(r"(\d+) records", text)
    records += int(m.group(1)) if m else 0
    m = re.search(r"p50 (\d+) ms, p95 (\d+) ms, p99 (\d+) ms, max (\d+) ms", text)
    if m:
        lats.append([int(x) for x in m.groups()])
    m = re.search(r"checkpoint requests: (\d+) GET, (\d+) PUT, (\d+) LIST", text)
    if m:
        req += sum(int(x) for x in m.groups())
    _, u, s = open(f"{out}/{name}.{w}.time").read().split()[-3:]
    cpu += float(u) + float(s)
    v = [int(x) // 1024 for x in open(f"{out}/{name}.{w}.rss").read().split()]
    rss.append(max(v) if v else 0)
lat = "/".join(str(max(l[i] for l in lats)) for i in range(4)) if lats else "-"
per_m = cpu / records * 1e6 if records else float("nan")
print(f"{scorer:<8} {int(rate):>7} {workers:>7} | {int(n)/took:>9,.0f} {records/took:>9,.0f} | {lat:<40} | {cpu:>7.1f} {per_m:>9,.0f} | {' '.join(map(str, rss)):<22} | {req/took:,.1f}")
PY
      for w in $(seq 1 "$workers"); do
        grep -h "^streamed\|^worker" "$OUT/$name.$w.out" | sed 's/^/#   /'
      done
    done
  done
done
