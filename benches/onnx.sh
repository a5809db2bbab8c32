#!/usr/bin/env bash
# ONNX scorer throughput: sentiflow's UDF (through DataFusion SQL, `sentiflow eval`) side by
# side with the Python reference pipeline (onnxruntime + tokenizers, scripts/onnx_reference.py)
# on the same model, the same ONNX Runtime library, the same sentences (SST-2 dev, 872) and the
# same number of threads, for batch sizes 1/8/32/128 and 1/2 threads. Each row runs --repeat
# rounds, the engines taking turns, each round a new process per engine (a process's luck, e.g.
# where its threads land, moves a 1-row figure by up to a quarter); a process scores the data
# twice after loading the model and keeps the faster pass (the first warms up). A figure is the
# round with the most sentences per CPU-second; CPU-s is the process's user+system time over
# that pass; peak RSS is the process's.
#   bash benches/onnx.sh [--repeat 3] [--binary PATH]
# Needs scripts/setup-ort.sh (run here) and a built binary (default: the dev profile that
# `cargo run` and the tests use; pass --binary target/release/sentiflow for release).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=3
PASSES=2 # passes per process: the first warms up, the faster is kept
BIN=${CARGO_TARGET_DIR:-target}/debug/sentiflow
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) REPEAT=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh 2>/dev/null
set -euo pipefail
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build first" >&2; exit 1; }
DATA=${SENTIFLOW_SHARED:-../shared}/data/sst2/dev.tsv
MODEL=sample_data/models/sentiment-minilm
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

run_rust() { # threads batch sessions [data]
  "$BIN" eval --data "${4:-$DATA}" --model "$MODEL" --onnx-threads "$1" --onnx-batch "$2" --onnx-sessions "$3" \
    --label-col "${LABEL_COL:-label}" --label-names negative,positive --repeat "$PASSES" --json
}
run_py() { # threads batch [--sort] [data]
  "$SENTIFLOW_PYTHON" scripts/onnx_reference.py --model "$MODEL" --data "${4:-$DATA}" --threads "$1" --batch "$2" \
    --label-col "${LABEL_COL:-label}" --label-names negative,positive --repeat "$PASSES" ${3:-}
}
best() { # the JSON line with the most sentences per CPU-second
  python3 -c 'import json,sys; print(max((l for l in sys.stdin if l.strip()), key=lambda l: json.loads(l)["sentences_per_cpu_s"]).strip())'
}
rounds() { # label cmd...: --repeat rounds of each "label:cmd" taking turns; the best of each into $OUT/<label>
  local i spec
  for spec in "$@"; do : >"$OUT/${spec%%:*}"; done
  for ((i = 0; i < REPEAT; i++)); do
    for spec in "$@"; do eval "${spec#*:}" >>"$OUT/${spec%%:*}"; done
  done
  for spec in "$@"; do best <"$OUT/${spec%%:*}" >"$OUT/${spec%%:*}.best"; done
}

echo "# ONNX scorer throughput, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, binary $BIN"
echo "# sentences/s (sentences per CPU-second) [peak RSS MiB]; ratio = sentiflow / Python of the same row"
printf '%-8s %-6s | %-30s | %-30s | %-30s | %s\n' threads batch "sentiflow UDF (1 session)" "Python, length-sorted batches" "Python, input order" "ratio sorted / input order (CPU)"
fmt() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("%.0f (%.0f) [%.0f]" % (j["sentences_per_s"], j["sentences_per_cpu_s"], j["peak_rss_bytes"]/2**20))' "$1"; }
ratio() { python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print("%.2f (%.2f)" % (a["sentences_per_s"]/b["sentences_per_s"], a["sentences_per_cpu_s"]/b["sentences_per_cpu_s"]))' "$1" "$2"; }
for t in 1 2; do
  for b in 1 8 32 128; do
    rounds "r:run_rust $t $b 1" "ps:run_py $t $b --sort" "pu:run_py $t $b"
    r=$(<"$OUT/r.best"); ps=$(<"$OUT/ps.best"); pu=$(<"$OUT/pu.best")
    printf '%-8s %-6s | %-30s | %-30s | %-30s | %s / %s\n' "$t" "$b" "$(fmt "$r")" "$(fmt "$ps")" "$(fmt "$pu")" "$(ratio "$r" "$ps")" "$(ratio "$r" "$pu")"
  done
done
# the default layout: one 1-thread session per core, each on its own batches
n=$(nproc)
# (sentiflow's default batch, 8; Python at 32, its best length-sorted figure above)
rounds "r:run_rust 1 8 $n" "ps:run_py $n 32 --sort" "pu:run_py $n 32"
r=$(<"$OUT/r.best"); ps=$(<"$OUT/ps.best"); pu=$(<"$OUT/pu.best")
printf '%-8s %-6s | %-30s | %-30s | %-30s | %s / %s\n' "${n}x1" 8/32 "$(fmt "$r") default" "$(fmt "$ps")" "$(fmt "$pu")" "$(ratio "$r" "$ps")" "$(ratio "$r" "$pu")"
acc=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accuracy"])' "$r")
echo "# SST-2 dev accuracy of the run above: $acc"
# the sample's posts (5,000; reposts and copies, as real feeds have, and texts the uncased
# tokenizer reads the same), every pass a new run: sentiflow runs each distinct model input (token
# ids) once, Python every row
python3 - "$OUT/sample.tsv" sample_data/tweets <<'PY'
import json, pathlib, sys
rows = [json.loads(l) for f in sorted(pathlib.Path(sys.argv[2]).rglob("*")) if f.is_file() for l in f.open() if l.strip()]
with open(sys.argv[1], "w") as out:
    out.write("text\ttruth_label\n")
    for r in rows:
        out.write(" ".join(r["text"].split()) + "\t" + r["truth_label"] + "\n")
PY
export LABEL_COL=truth_label
rounds "r:run_rust 1 8 $n $OUT/sample.tsv" "ps:run_py $n 32 --sort $OUT/sample.tsv"
r=$(<"$OUT/r.best"); ps=$(<"$OUT/ps.best")
# the scorer's counters add up over a process's passes
reused=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["scorer_stats"].get("texts_reused", 0)) // int(sys.argv[2]))' "$r" "$PASSES")
printf '%-8s %-6s | %-30s | %-30s | %-30s | %s\n' "${n}x1" 8/32 "$(fmt "$r") sample" "$(fmt "$ps")" "-" "$(ratio "$r" "$ps")"
echo "# the sample: $(($(wc -l <"$OUT/sample.tsv") - 1)) posts; in each pass $reused of them were copies of a text run before (reused, not run)"
