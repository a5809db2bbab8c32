#!/usr/bin/env python3
"""The Python reference pipeline for sentiflow's ONNX scorer: onnxruntime + tokenizers.

Same model directory, same rules as the Rust scorer (udfs/src/onnx.rs): config.json's
`preprocess` (tweet-v1: @mentions -> @user, URLs -> http), tokenizer.json with its
padding switched off and truncation at config.json's max_length, batches padded to their
longest text, softmax over the logits, score = P(positive) - P(negative); the predicted
label is the most probable class, or on binary data (no neutral gold label)
P(positive) > P(negative), as `sentiflow eval` judges it.
Used by the integration test that checks the Rust predictions are identical on SST-2 dev
and TweetEval validation, and by benches/onnx.sh for the side-by-side throughput.

    python scripts/onnx_reference.py --model sample_data/models/sentiment-minilm \
        --data ../shared/data/sst2/dev.tsv [--batch 32] [--threads 2] [--sort] \
        [--predictions out.jsonl] [--repeat 3]
    python scripts/onnx_reference.py --data ../shared/data/tweet_eval_sentiment/val_text.txt \
        --labels-file ../shared/data/tweet_eval_sentiment/val_labels.txt --label-names negative,neutral,positive

Prints one JSON object: rows, accuracy, wall_s, cpu_s, sentences_per_s, sentences_per_cpu_s
(the best of --repeat runs; model loading is not timed). Needs onnxruntime==1.31.1,
tokenizers==0.23.2, numpy (scripts/setup-ort.sh installs them).
"""
import argparse
import json
import os
import resource
import time

import re

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

# tweet-v1, as udfs/src/text.rs and scripts/train/train_sentiment_model.py
_MENTION = re.compile(r"@[A-Za-z0-9_]+")
_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[^ \t\n\r\x0b\x0c]+")


def normalize_tweet(text):
    return _MENTION.sub("@user", _URL.sub("http", text))


def read_tsv(path, text_col, label_col):
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        ti, li = header.index(text_col), header.index(label_col)
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip("\n")]
    return [r[ti] for r in rows], [r[li].strip() for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sample_data/models/sentiment-minilm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--labels-file", help="one gold label a line beside a .txt --data (TweetEval)")
    ap.add_argument("--label-names", help="names of integer gold labels, comma-separated (default: id2label)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads, 0 = onnxruntime's default")
    ap.add_argument("--sort", action="store_true", help="sort texts by token count before batching, as the Rust scorer does")
    ap.add_argument("--predictions")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()

    config = json.load(open(os.path.join(a.model, "config.json")))
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    max_length = min(int(config.get("max_length", config.get("max_position_embeddings", 512))), 512)
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    model = next(os.path.join(a.model, n) for n in ("model.onnx", "model_quantized.onnx") if os.path.exists(os.path.join(a.model, n)))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if a.threads:
        opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    input_names = {i.name for i in sess.get_inputs()}
    if a.labels_file:
        texts = [l.rstrip("\n") for l in open(a.data, encoding="utf-8")]
        gold = [l.strip() for l in open(a.labels_file)]
    else:
        texts, gold = read_tsv(a.data, a.text_col, a.label_col)
    if config.get("preprocess") == "tweet-v1":
        texts = [normalize_tweet(t) for t in texts]
    elif config.get("preprocess"):
        raise SystemExit(f"unknown preprocess {config['preprocess']!r}")

    def score():
        probs = [None] * len(texts)
        enc = tok.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids)) if a.sort else list(range(len(texts)))
        for s in range(0, len(order), a.batch):
            chunk = order[s:s + a.batch]
            width = max(len(enc[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for r, i in enumerate(chunk):
                e = enc[i]
                n = len(e.ids)
                ids[r, :n], mask[r, :n], types[r, :n] = e.ids, e.attention_mask, e.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in input_names:
                feeds["token_type_ids"] = types
            logits = sess.run(None, feeds)[0]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            for r, i in enumerate(chunk):
                probs[i] = p[r]
        return probs

    best = None
    for _ in range(max(1, a.repeat)):
        c0, t0 = time.process_time(), time.perf_counter()
        probs = score()
        run = (time.perf_counter() - t0, time.process_time() - c0)
        best = run if best is None or run[0] < best[0] else best
    names = a.label_names.split(",") if a.label_names else labels
    gold_names = [names[int(g)] if g.isdigit() else g for g in gold]
    binary = "neutral" not in gold_names
    if binary:
        pos, neg = labels.index("positive"), labels.index("negative")
        pred = ["positive" if p[pos] > p[neg] else "negative" for p in probs]
    else:
        pred = [labels[int(np.argmax(p))] for p in probs]
    acc = float(np.mean([p == g for p, g in zip(pred, gold_names)]))
    if a.predictions:
        with open(a.predictions, "w") as f:
            for i, (p, g, pr) in enumerate(zip(pred, gold_names, probs)):
                f.write(json.dumps({"row": i, "gold": g, "predicted": p, "probs": [float(x) for x in pr]}) + "\n")
    wall, cpu = best
    print(json.dumps({"engine": "python onnxruntime " + ort.__version__ + " + tokenizers", "rows": len(texts),
                      "accuracy": acc, "wall_s": wall, "cpu_s": cpu, "sentences_per_s": len(texts) / wall,
                      "sentences_per_cpu_s": len(texts) / max(cpu, 1e-9), "batch": a.batch, "threads": a.threads,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "sort": a.sort}))


if __name__ == "__main__":
    main()
