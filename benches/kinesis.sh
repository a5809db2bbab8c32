#!/usr/bin/env bash
# Produce and ingest throughput against the local servers: `sentiflow generate --to kinesis://`
# (PutRecords, 500 records per call) and `sentiflow ingest --until-caught-up` (GetRecords, raw
# Parquet with checkpoints) into a local directory and into S3 (SeaweedFS), on kinesalite.
# Prints records/s, MB/s of record data, CPU-s per million records and peak RSS per step, measured
# with /usr/bin/time around the whole process (start-up included), beside Kinesis's per-shard limits.
#   bash benches/kinesis.sh [--records 200000] [--shards 4] [--binary PATH]
# Starts and stops its own servers (scripts/aws-local.sh, scripts/s3-local.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=200000
SHARDS=4
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --records) RECORDS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
export SENTIFLOW_KINESIS_PORT=${SENTIFLOW_KINESIS_PORT:-4577} SENTIFLOW_MOTO_PORT=${SENTIFLOW_MOTO_PORT:-4576}
export SENTIFLOW_S3_PORT=${SENTIFLOW_S3_PORT:-8343}
# shellcheck source=scripts/s3-local.sh
source scripts/s3-local.sh
# shellcheck source=scripts/aws-local.sh
source scripts/aws-local.sh
set -euo pipefail
OUT=$(mktemp -d)
trap 'stop_aws_local; stop_s3_local; rm -rf "$OUT"' EXIT
export SENTIFLOW_NO_PROGRESS=1

"$SENTIFLOW_TOOLS/venv/bin/python" - "$SHARDS" <<'PY'
import sys, time, boto3, os
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
k.create_stream(StreamName="bench", ShardCount=int(sys.argv[1]))
while k.describe_stream_summary(StreamName="bench")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
    time.sleep(0.05)
PY

measure() { # name command...
  local name=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$OUT/time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" \
    || { echo "$name failed:"; cat "$OUT/$name.err"; exit 1; }
  read -r wall user sys rss_kb <"$OUT/time"
  local bytes
  bytes=$(grep -oE '[0-9]+ bytes' "$OUT/$name.out" | head -1 | cut -d' ' -f1)
  python3 - "$name" "$RECORDS" "$bytes" "$wall" "$user" "$sys" "$rss_kb" <<'PY'
import sys
name, n, b, wall, user, sys_, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(float, sys.argv[4:])
cpu = user + sys_
print(f"{name:<22} {n/wall:>10,.0f} rec/s {b/wall/1e6:>7.2f} MB/s {wall:>7.2f} s wall {cpu:>7.2f} CPU-s {cpu/n*1e6:>7.1f} CPU-s/M rec {rss/1024:>6.0f} MiB peak RSS")
PY
}

echo "# Kinesis produce/ingest, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, kinesalite 3.3.3 on 127.0.0.1, $SHARDS shards, $RECORDS records (~270 B each), binary $BIN"
measure "produce (PutRecords)" "$BIN" generate --rows "$RECORDS" --seed 1 --to kinesis://bench
measure "ingest -> local dir" "$BIN" ingest --from kinesis://bench --to "$OUT/raw" --until-caught-up --max-rows 50000
measure "ingest -> S3 (weed)" "$BIN" ingest --from kinesis://bench --to "s3://$SENTIFLOW_TEST_S3_BUCKET/bench-$$/raw" --until-caught-up --max-rows 50000
grep -h "^ingested\|^shards" "$OUT"/ingest*.out | sed 's/^/#   /'
python3 - "$SHARDS" <<'PY'
import sys
s = int(sys.argv[1])
print(f"# AWS Kinesis limits for {s} shards: in {s*1000:,} rec/s or {s} MB/s; out {s*2} MB/s per consumer (GetRecords 5 calls/s/shard)")
PY
