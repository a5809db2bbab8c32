#!/usr/bin/env bash
# Rebuilds sample_data/models/sentiment-minilm, the shipped ONNX model, from ../shared/data in one
# command: two teacher runs of train_sentiment_model.py, then the student distilled from their mean
# probabilities (scripts/train/README.md). About 2.5 hours on 2 CPU cores.
#
#   bash scripts/train/rebuild_shipped.sh [--python PATH] [--data DIR] [--work DIR] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv-train/bin/python}
DATA=../shared/data
WORK=target/train
THREADS=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -x "$PY" ] || { echo "no Python at $PY: python3 -m venv .venv-train && .venv-train/bin/pip install -r scripts/train/requirements.txt" >&2; exit 1; }
export HF_HUB_OFFLINE=1
train() { "$PY" scripts/train/train_sentiment_model.py --data "$DATA" --threads "$THREADS" "$@"; }
# teacher 1: TweetEval's own class mix (neutral-leaning)
train --out "$WORK/tweets/sentiment-minilm"
# teacher 2: TweetEval's classes weighted by frequency^-0.5, all of SST-2 twice (negative-leaning)
train --out "$WORK/balanced/sentiment-minilm" --sst2 67349 --sst2-epochs 2 --class-balance 0.5
# the student: both teachers' mean probabilities as targets, SST-2 twice with its labels
train --out sample_data/models/sentiment-minilm --sst2 67349 --sst2-epochs 2 --s140 40000 --s140-weight 1.0 \
  --teacher "$WORK/tweets/sentiment-minilm" "$WORK/balanced/sentiment-minilm"
