#!/usr/bin/env python3
"""Writes tests/fixtures/tiny-3class: a tiny 3-class ONNX "classifier" for the tests
(and with --classes 2, tests/fixtures/tiny-2class: negative, positive).

It is not a sentiment model: embeddings (seeded random, 4 wide) of the BERT vocabulary,
masked mean pooling, a 4x3 linear layer. It has no token_type_ids input and its labels
come in a non-obvious order (positive, negative, neutral), so the tests exercise the
3-class path, id2label ordering and the optional input of udfs/src/onnx.rs, and compare
against expected probabilities computed here with numpy (expected.jsonl).
Needs onnx and numpy (the training venv of scripts/train has them).
"""
import argparse
import json
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

ap = argparse.ArgumentParser()
ap.add_argument("--classes", type=int, choices=[2, 3], default=3)
n = ap.parse_args().classes
out = f"tests/fixtures/tiny-{n}class"
labels = ["positive", "negative", "neutral"] if n == 3 else ["negative", "positive"]
src = "sample_data/models/sentiment-minilm/tokenizer.json"
os.makedirs(out, exist_ok=True)
shutil.copy(src, os.path.join(out, "tokenizer.json"))
tok = Tokenizer.from_file(src)
vocab = tok.get_vocab_size()
rng = np.random.default_rng(7)
E = rng.normal(size=(vocab, 4)).astype(np.float32)
W = rng.normal(size=(4, n)).astype(np.float32)

nodes = [
    helper.make_node("Gather", ["E", "input_ids"], ["emb"]),                      # [b,s,4]
    helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),  # [b,s]
    helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),                  # [b,s,1]
    helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
    helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),    # [b,4]
    helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),      # [b,1]
    helper.make_node("Div", ["summed", "count"], ["pooled"]),
    helper.make_node("MatMul", ["pooled", "W"], ["logits"]),                       # [b,3]
]
graph = helper.make_graph(
    nodes, "tiny3",
    [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
     helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n])],
    [numpy_helper.from_array(E, "E"), numpy_helper.from_array(W, "W"),
     numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
     numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 10
onnx.checker.check_model(model)
onnx.save(model, os.path.join(out, "model.onnx"))
json.dump({"id2label": {str(i): l for i, l in enumerate(labels)}, "max_length": 16},
          open(os.path.join(out, "config.json"), "w"), indent=2)

texts = ["I love it", "this is terrible and I want my money back", "the meeting is at noon",
         "a much longer text that goes past the sixteen token limit of this tiny model, so it is cut at sixteen tokens"]
tok.no_padding()
tok.enable_truncation(16)
with open(os.path.join(out, "expected.jsonl"), "w") as f:
    for t in texts:
        ids = np.array(tok.encode(t).ids)
        logits = E[ids].mean(0) @ W
        p = np.exp(logits - logits.max())
        p /= p.sum()
        f.write(json.dumps({"text": t, "probs": [float(x) for x in p]}) + "\n")
print("wrote", out, os.path.getsize(os.path.join(out, "model.onnx")), "bytes")
