#!/usr/bin/env bash
# Checks infra/ and sql/athena/ as far as this machine allows (no AWS, no Terraform CLI, no Docker):
#   1. every .tf file parses (python-hcl2) and the Glue tables come from glue_schema.json;
#   2. checkov passes (every skipped check carries its reason in a #checkov:skip comment);
#   3. hadolint passes on infra/docker/Dockerfile;
#   4. the Athena queries parse as Trino SQL and return the same rows on DuckDB and on DataFusion
#      over a data root that `sentiflow run` writes.
# (glue_schema.json and sql/athena/ddl.sql against the schema module: tests/integration/infra.rs)
#   bash infra/check/run.sh [path/to/sentiflow]
set -euo pipefail
cd "$(dirname "$0")/../.."
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
VENV=$SENTIFLOW_TOOLS/infra-venv
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/sentiflow}
[ -x "$BIN" ] || { echo "infra-check: no sentiflow binary at $BIN (cargo build first)" >&2; exit 1; }

if ! cmp -s infra/check/requirements.txt "$VENV/requirements.txt" 2>/dev/null; then
  echo "infra-check: installing infra/check/requirements.txt into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r infra/check/requirements.txt
  cp infra/check/requirements.txt "$VENV/requirements.txt"
fi

"$VENV/bin/python" infra/check/parse_hcl.py
# --skip-download: no network for Prisma Cloud guidelines; checks run from the installed package
"$VENV/bin/checkov" -d infra/terraform --framework terraform --quiet --compact --skip-download
echo "infra-check: checkov passed"
"$VENV/bin/hadolint" infra/docker/Dockerfile
echo "infra-check: hadolint passed"

root=$(mktemp -d /tmp/sentiflow-athena.XXXXXX)
trap 'rm -rf "$root"' EXIT
"$BIN" run --scorer lexicon --out "$root" >/dev/null
"$VENV/bin/python" infra/check/athena_sql.py --data "$root" --sentiflow "$BIN"
echo "infra-check: done"
