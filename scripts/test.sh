#!/usr/bin/env bash
# The test command: installs ONNX Runtime (PyPI) if missing, starts a local S3 server (SeaweedFS on 127.0.0.1), runs
# `cargo test` (unit tests + the one integration test binary), stops the server.
#   bash scripts/test.sh [extra cargo test args]
# SENTIFLOW_SKIP_S3=1 skips the S3 test out loud instead of starting a server.
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

cargo test --workspace "$@"

# infra/ and sql/athena/: HCL parses, checkov, hadolint, Athena queries on DuckDB and DataFusion
bash infra/check/run.sh "$CARGO_TARGET_DIR/debug/sentiflow"
