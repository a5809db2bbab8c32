#!/usr/bin/env bash
# Benchmark: sentiflow's aggregate code path (`sentiflow bench`, same SQL and
# function as `sentiflow aggregate`) side by side with Polars, DuckDB,
# DataFusion-python, pyarrow and PySpark on the 10M-row peer data set of
# ../shared/peers/, then compare.py checks every engine's windows agree exactly.
#   bash benches/peers.sh [ROWS] [RUNS] [ENGINES]
# Defaults: 10000000 rows, 3 runs, duckdb,polars,pyarrow,spark,datafusion.
# Needs ../shared/peers (beside the repo), Java 17 for PySpark, ~4 GB disk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
RUNS=${2:-3}
ENGINES=${3:-duckdb,polars,pyarrow,spark,datafusion}
PEERS=${SENTIFLOW_PEERS:-../shared/peers}
WORK=${SENTIFLOW_BENCH_DIR:-$HOME/.cache/sentiflow/bench}
VENV=$HOME/.cache/sentiflow/peers-venv
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

[ -d "$PEERS/scripts" ] || { echo "bench: $PEERS/scripts not found (set SENTIFLOW_PEERS)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q pyspark duckdb polars pyarrow numpy psutil datafusion
fi
cargo build --release --bin sentiflow
BIN=$CARGO_TARGET_DIR/release/sentiflow

DATA=$WORK/data-$ROWS
if [ ! -f "$DATA/.done" ]; then
  rm -rf "$DATA"
  "$VENV/bin/python" "$PEERS/scripts/gen_data.py" --out "$DATA" --rows "$ROWS" --files 8 --seed 42
  touch "$DATA/.done"
fi
rm -rf "$WORK/out"
"$VENV/bin/python" "$PEERS/scripts/bench.py" --data "$DATA" --out-root "$WORK/out" --runs "$RUNS" \
  --engines "$ENGINES" --cmd "sentiflow=$BIN bench --input {input} --out {out} --task {task}"
