"""The encoder's own features: find the pooled vector its head reads, expose it, and write
the graph again with a new head on it.

A classifier graph ends in a linear head (``MatMul``/``Gemm`` + ``Add``, quantised or not)
on one pooled vector per text. Walking back from the graph's output through those head
operators finds that vector (for the built-in transformer, the mean-pooled last layer,
384 values); :func:`feature_session` serves it as an extra output, and :func:`write_head`
keeps only what computes it and appends a new ``[dim, labels]`` head, so the adapted
member runs exactly the encoder's work plus a tiny matmul: the base's speed.

Needs the ``onnx`` package (the ``adapt`` extra); forward passes only, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BundleError, MissingExtraError
from ..planning import plan_batches
from ..tokenization import TextEncoder

if TYPE_CHECKING:
    import onnx

    from ..bundle import Bundle

# operators a head is made of: the walk back from the output passes through these
HEAD_OPS = {"Add", "Mul", "MatMul", "Gemm", "MatMulInteger", "Cast", "DynamicQuantizeLinear"}
FEATURE_OUTPUT = "qinggan_features"
BATCH_TOKENS = 4096


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("qinggan adapt", "adapt", "onnx") from None
    return onnx


def find_features(graph: onnx.GraphProto) -> str:
    """The tensor the graph's linear head reads (walking back from its first output)."""
    producers = {out: node for node in graph.node for out in node.output}
    constants = {init.name for init in graph.initializer}
    name = graph.output[0].name
    for _ in range(32):
        node = producers.get(name)
        if node is None:
            break
        if node.op_type not in HEAD_OPS:
            return str(name)
        computed = [i for i in node.input if i and i not in constants and i in producers]
        if not computed:
            break
        name = computed[0]
    raise BundleError(f"cannot find the pooled features before the head of {graph.name!r}")


def load_graph(path: Path) -> onnx.ModelProto:
    model: onnx.ModelProto = _onnx().load(str(path))
    return model


def feature_session(model: onnx.ModelProto, threads: int) -> tuple[Any, str]:
    """An ONNX Runtime session with the pooled features as a second output, and their name."""
    onnx = _onnx()
    feature = find_features(model.graph)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[1:]
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(feature))
    return create_session_from_bytes(probe.SerializeToString(), threads), feature


def create_session_from_bytes(data: bytes, threads: int) -> Any:
    """A CPU session (the engine's options) over an in-memory graph."""
    import onnxruntime as ort

    from ..engine import session_options

    return ort.InferenceSession(
        data, session_options(threads, False), providers=["CPUExecutionProvider"]
    )


class FeatureExtractor:
    """Pooled features and the encoder's own logits of texts under one encoder bundle."""

    def __init__(self, bundle: Bundle, threads: int) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.encoder = TextEncoder(bundle.tokenizer_path, manifest.max_length, manifest.text_prefix)
        self.model = load_graph(bundle.model_path())
        self.session, self.feature = feature_session(self.model, threads)
        self.inputs = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``[n, dim]`` features and ``[n, labels]`` logits of the base head, in input order."""
        encoded = self.encoder.encode(list(texts))
        out: np.ndarray | None = None
        logits: np.ndarray | None = None
        lengths = [len(e) for e in encoded]
        for cut in plan_batches(lengths, 64, BATCH_TOKENS):
            ids, mask = self.encoder.pad([encoded[i] for i in cut])
            feeds = {"input_ids": ids}
            if "attention_mask" in self.inputs:
                feeds["attention_mask"] = mask
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            head, values = self.session.run(None, feeds)
            values = np.asarray(values, dtype=np.float32).reshape(len(cut), -1)
            if out is None or logits is None:
                out = np.zeros((len(texts), values.shape[1]), dtype=np.float32)
                logits = np.zeros((len(texts), head.shape[1]), dtype=np.float64)
            out[cut], logits[cut] = values, head
        if out is None or logits is None:
            return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0))
        return out, logits


def write_head(
    model: onnx.ModelProto, feature: str, weights: np.ndarray, bias: np.ndarray, path: Path
) -> None:
    """Save ``model`` cut at ``feature`` plus a new linear head (``logits = f @ W + b``)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producers = {out: index for index, node in enumerate(graph.node) for out in node.output}
    needed: set[int] = set()
    stack = [feature]
    while stack:
        index = producers.get(stack.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        stack.extend(i for i in graph.node[index].input if i)
    kept = [node for index, node in enumerate(graph.node) if index in needed]
    used = {i for node in kept for i in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    head = [
        numpy_helper.from_array(weights.astype(np.float32), "qinggan_head_weight"),
        numpy_helper.from_array(bias.astype(np.float32), "qinggan_head_bias"),
    ]
    nodes = [
        *kept,
        helper.make_node("MatMul", [feature, "qinggan_head_weight"], ["qinggan_head_raw"]),
        helper.make_node("Add", ["qinggan_head_raw", "qinggan_head_bias"], ["logits"]),
    ]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(bias)])
    inputs = [i for i in graph.input if i.name in used]
    new_graph = helper.make_graph(nodes, graph.name, inputs, [output], [*initializers, *head])
    new = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    new.ir_version = model.ir_version
    onnx.save(new, str(path))
