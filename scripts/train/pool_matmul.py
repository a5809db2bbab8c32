"""Rewrite an exported model's masked mean pooling as one batched MatMul, in place.

    python scripts/train/pool_matmul.py sample_data/models/sentiment-minilm/model.onnx

The PyTorch export writes `(hidden * mask).sum(1)` as Mul + ReduceSum(axis 1). ONNX Runtime's
ReduceSum picks its summation order from the tensor's whole shape, so a text's pooled vector,
and so its logits, differed in the last bit with the number of rows in its batch. As
`mask^T @ hidden` (a MatMul of [batch, 1, seq] by [batch, seq, hidden]) each row is its own
matrix product: measured with ONNX Runtime 1.31.1 (its optimised graph, 1 and 2 threads), every
text of SST-2 dev and the sample's tweets then gets the same bits alone at its own width as in
any batch, padded to any width (sentiflow checks this when it loads a model and guards it with
a test). The value is the same sum; only the order of additions changes.

train_sentiment_model.py calls `pool_as_matmul` on the model it ships; the command line applies it
to a model already built. A model already rewritten is left as it is.
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

AXES = "pool_squeeze_axes"


def _attention_mask_derived(graph, name):
    """True if tensor `name` is attention_mask through Unsqueeze/Cast only."""
    producers = {o: n for n in graph.node for o in n.output}
    while name != "attention_mask":
        n = producers.get(name)
        if n is None or n.op_type not in ("Unsqueeze", "Cast"):
            return False
        name = n.input[0]
    return True


def pool_as_matmul(src, dst):
    m = onnx.load(src)
    g = m.graph
    if any(n.name == "/pool/MatMul" for n in g.node):
        print(f"{src}: pooling is already a MatMul", file=sys.stderr)
        if src != dst:
            onnx.save(m, dst)
        return
    producers = {o: n for n in g.node for o in n.output}
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    found = []
    for rs in g.node:
        if rs.op_type != "ReduceSum" or rs.input[0] not in producers:
            continue
        mul = producers[rs.input[0]]
        axes = consts[rs.input[1]].tolist() if len(rs.input) > 1 and rs.input[1] in consts else None
        keepdims = next((a.i for a in rs.attribute if a.name == "keepdims"), 1)
        if mul.op_type != "Mul" or axes != [1] or keepdims != 0:
            continue
        masks = [i for i in mul.input if _attention_mask_derived(g, i)]
        if len(masks) == 1:
            hidden = next(i for i in mul.input if i != masks[0])
            found.append((mul, rs, hidden, masks[0]))
    if len(found) != 1:
        sys.exit(f"{src}: expected one masked mean pooling (Mul by the attention mask, ReduceSum over axis 1), "
                 f"found {len(found)}")
    mul, rs, hidden, mask = found[0]
    if sum(mul.output[0] in n.input for n in g.node) != 1:
        sys.exit(f"{src}: the pooling product {mul.output[0]} has other users")
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), AXES))
    new = [
        helper.make_node("Transpose", [mask], ["/pool/mask_t"], name="/pool/Transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["/pool/mask_t", hidden], ["/pool/sum"], name="/pool/MatMul"),
        helper.make_node("Squeeze", ["/pool/sum", AXES], [rs.output[0]], name="/pool/Squeeze"),
    ]
    nodes = []
    for n in g.node:
        if n is mul:
            nodes.extend(new)
        elif n is not rs:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pool_as_matmul(sys.argv[1], sys.argv[1])
