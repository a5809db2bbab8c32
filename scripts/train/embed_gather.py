"""Rewrite an int8 model's embedding lookups to gather the int8 rows first, then scale them, in place.

    python scripts/train/embed_gather.py sample_data/models/sentiment-minilm/model.onnx

The int8 export stores each embedding table as int8 with a scale per row, behind a
DequantizeLinear that feeds the Gather. ONNX Runtime does not fold a DequantizeLinear (it keeps
QDQ pairs for its own fusions), so every run dequantized the whole word table, 30,522 x 384
floats: 47 MB of working memory per session and a few milliseconds per batch, for the few rows a
batch reads. As Gather(int8 table) -> Cast -> Mul(Gather(row scales)) a run reads only its rows.
The value is the same product, float(q) * scale, computed once per element in both forms (the
zero point is 0: symmetric), so the logits keep their bits; train_sentiment_model.py checks that
on its evaluation sets.

train_sentiment_model.py calls `gather_before_dequant` on the model it ships; the command line
applies it to a model already built. A model already rewritten is left as it is.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def gather_before_dequant(src, dst):
    m = onnx.load(src)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    rewritten = 0
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        q = inits.get(dq.input[0])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        users = [n for n in g.node if dq.output[0] in n.input]
        if q is None or len(q.dims) != 2 or axis != 0 or len(dq.input) < 3 or not users:
            continue
        if any(u.op_type != "Gather" or u.input[0] != dq.output[0]
               or next((a.i for a in u.attribute if a.name == "axis"), 0) != 0 for u in users):
            continue
        if numpy_helper.to_array(inits[dq.input[2]]).any():
            continue  # a zero point other than 0 would need a Sub: not what the export writes
        for u in users:
            ids, out, p = u.input[1], u.output[0], u.name
            new = [
                helper.make_node("Gather", [dq.input[0], ids], [p + "_q"], name=p + "_q", axis=0),
                helper.make_node("Gather", [dq.input[1], ids], [p + "_scale"], name=p + "_scale", axis=0),
                helper.make_node("Cast", [p + "_q"], [p + "_f"], name=p + "_cast", to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", [p + "_scale", p + "_axes"], [p + "_s"], name=p + "_unsqueeze"),
                helper.make_node("Mul", [p + "_f", p + "_s"], [out], name=p + "_dequant"),
            ]
            g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), p + "_axes"))
            at = list(g.node).index(u)
            g.node.remove(u)
            for k, n in enumerate(new):
                g.node.insert(at + k, n)
        g.node.remove(dq)
        g.initializer.remove(inits[dq.input[2]])
        rewritten += 1
    if not rewritten:
        print(f"{src}: no DequantizeLinear feeds a Gather", file=sys.stderr)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/train/embed_gather.py MODEL.onnx")
    gather_before_dequant(sys.argv[1], sys.argv[1])
