#!/usr/bin/env bash
# The test command: installs ONNX Runtime (PyPI) if missing, starts the local servers on 127.0.0.1 (SeaweedFS for S3,
# kinesalite for Kinesis, moto for Firehose), runs `cargo test` (unit tests + the one integration test binary), stops them.
#   bash scripts/test.sh [extra cargo test args]
# SENTIFLOW_SKIP_S3=1 / SENTIFLOW_SKIP_AWS=1 skip the S3 / Kinesis+Firehose tests out loud instead of starting servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sentiflow/target}

# ONNX Runtime (PyPI wheel) for the ONNX scorer and the Python reference pipeline
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh
set -euo pipefail

if [ -z "${SENTIFLOW_SKIP_S3:-}" ]; then
  # shellcheck source=scripts/s3-local.sh
  source scripts/s3-local.sh
  trap stop_s3_local EXIT
  set -euo pipefail
fi

if [ -z "${SENTIFLOW_SKIP_AWS:-}" ]; then
  # shellcheck source=scripts/aws-local.sh
  source scripts/aws-local.sh
  trap 'stop_aws_local; if [ -n "${S3_PID:-}" ]; then stop_s3_local; fi' EXIT
  set -euo pipefail
fi

cargo test --workspace "$@"

# infra/ and sql/athena/: HCL parses, checkov, hadolint, Athena queries on DuckDB and DataFusion
bash infra/check/run.sh "$CARGO_TARGET_DIR/debug/sentiflow"
