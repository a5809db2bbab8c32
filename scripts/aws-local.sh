#!/usr/bin/env bash
# Install (once) and start the local Kinesis and Firehose servers on 127.0.0.1, for tests,
# benchmarks and local runs:
#   kinesalite 3.3.3 (npm): Kinesis Data Streams with AWS-shaped 56-digit sequence numbers,
#                           400 errors, SplitShard/MergeShards; state in a temp dir
#   moto 5.2.5 (PyPI moto[server]): Firehose, delivering into its own S3 (same port)
# Usage:  source scripts/aws-local.sh   # exports the endpoints; call stop_aws_local at exit
# Quirks (measured in ../shared/aws-local/README.md): kinesalite's CLI binds all interfaces,
# so it is started through its API on 127.0.0.1; moto's DescribeDeliveryStream lacks
# compression_format unless the stream is created with it; moto delivers one object per call.
# Measured here: kinesalite never answers GetShardIterator AT_TIMESTAMP for a time after the
# shard's last record (and rejects a future time), which AWS serves as an empty iterator.
set -euo pipefail
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
KINESIS_PORT=${SENTIFLOW_KINESIS_PORT:-4567}
MOTO_PORT=${SENTIFLOW_MOTO_PORT:-4566}
KINESALITE_VERSION=3.3.3
MOTO_VERSION=5.2.5

command -v node >/dev/null || { echo "aws-local: node not found (kinesalite needs Node.js and npm)" >&2; return 1 2>/dev/null || exit 1; }
if [ ! -f "$SENTIFLOW_TOOLS/kinesalite/node_modules/kinesalite/package.json" ]; then
  echo "aws-local: installing kinesalite@$KINESALITE_VERSION into $SENTIFLOW_TOOLS/kinesalite" >&2
  mkdir -p "$SENTIFLOW_TOOLS/kinesalite"
  ( cd "$SENTIFLOW_TOOLS/kinesalite" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --silent --no-audit --no-fund "kinesalite@$KINESALITE_VERSION" >/dev/null )
fi
if [ ! -x "$SENTIFLOW_TOOLS/venv/bin/moto_server" ]; then
  echo "aws-local: installing moto[server]==$MOTO_VERSION into $SENTIFLOW_TOOLS/venv" >&2
  [ -x "$SENTIFLOW_TOOLS/venv/bin/pip" ] || python3 -m venv "$SENTIFLOW_TOOLS/venv"
  "$SENTIFLOW_TOOLS/venv/bin/pip" install -q "moto[server]==$MOTO_VERSION"
fi

AWS_LOCAL_STATE=$(mktemp -d /tmp/sentiflow-aws.XXXXXX)
# kinesalite: small create/delete/update delays so tests that reshard don't wait 500 ms per step
node -e "require('$SENTIFLOW_TOOLS/kinesalite/node_modules/kinesalite')({path:'$AWS_LOCAL_STATE/kinesis',createStreamMs:50,deleteStreamMs:50,updateStreamMs:50,shardLimit:100}).listen($KINESIS_PORT,'127.0.0.1')" \
  >"$AWS_LOCAL_STATE/kinesalite.log" 2>&1 &
KINESALITE_PID=$!
"$SENTIFLOW_TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$AWS_LOCAL_STATE/moto.log" 2>&1 &
MOTO_PID=$!

stop_aws_local() {
  kill "$KINESALITE_PID" "$MOTO_PID" 2>/dev/null || true
  wait "$KINESALITE_PID" "$MOTO_PID" 2>/dev/null || true
  rm -rf "$AWS_LOCAL_STATE"
}

aws_local_wait() { # port pid name
  local i=0
  until (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then echo "aws-local: $3 exited; log:" >&2; tail -20 "$AWS_LOCAL_STATE/$3.log" >&2; stop_aws_local; return 1; fi
    i=$((i + 1)); if [ $i -gt 600 ]; then echo "aws-local: timeout waiting for $3 on :$1" >&2; stop_aws_local; return 1; fi
    sleep 0.1
  done
}
aws_local_wait "$KINESIS_PORT" "$KINESALITE_PID" kinesalite || { return 1 2>/dev/null || exit 1; }
aws_local_wait "$MOTO_PORT" "$MOTO_PID" moto || { return 1 2>/dev/null || exit 1; }

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} AWS_REGION=${AWS_REGION:-us-east-1}
# service-specific endpoints: the AWS SDKs prefer them to AWS_ENDPOINT_URL (which points at S3)
export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:$KINESIS_PORT
export AWS_ENDPOINT_URL_FIREHOSE=http://127.0.0.1:$MOTO_PORT
export SENTIFLOW_TEST_KINESIS=$AWS_ENDPOINT_URL_KINESIS SENTIFLOW_TEST_MOTO=http://127.0.0.1:$MOTO_PORT
echo "aws-local: kinesalite on :$KINESIS_PORT (pid $KINESALITE_PID), moto on :$MOTO_PORT (pid $MOTO_PID)" >&2

set +e +u +o pipefail
