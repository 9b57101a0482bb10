"""A tiny, deterministic bundle for tests, smoke benchmarks and examples.

The model is a bag of characters written directly as an ONNX graph (no torch): each
token has two logits, averaged over the unmasked tokens. Characters such as 好/棒/喜欢
lean positive and 差/烂/失望 negative, so tests can assert real labels. The tokenizer is
a genuine BERT-style WordPiece ``tokenizer.json`` with [CLS]/[SEP] and Chinese
character splitting.

Needs the ``onnx`` package (the ``convert`` or ``test`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import Bundle, write_bundle

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE_CHARS = "好棒赞喜欢爱满意推荐优秀美味快舒服干净"
NEGATIVE_CHARS = "差烂坏糟糕失望退垃圾慢脏贵难吃恶"
NEUTRAL_CHARS = (
    "的了是我你他她它们这那有在不也就都很还又和与但可以会能说到去来上下大小多少个"
    "酒店服务房间前台早餐位置价格质量东西商品物流快递包装客服外卖味道下次一般"
    "书电脑手机屏幕系统电池声音感觉觉得非常真太比较总体环境设施价钱性价比"
    "，。！？、：；“”（）…~"
)
ASCII = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]


def tiny_vocab() -> list[str]:
    seen: dict[str, None] = {}
    for token in [*SPECIALS, *POSITIVE_CHARS, *NEGATIVE_CHARS, *NEUTRAL_CHARS, *ASCII]:
        seen.setdefault(token, None)
    return list(seen)


def write_tiny_tokenizer(path: Path, vocab: list[str]) -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    ids = {tok: i for i, tok in enumerate(vocab)}
    tokenizer = Tokenizer(WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    tokenizer.save(str(path))


def tiny_weights(vocab: list[str], seed: int = 0) -> np.ndarray:
    """Per-token (negative, positive) logits."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.05, size=(len(vocab), 2)).astype(np.float32)
    for i, token in enumerate(vocab):
        if token in POSITIVE_CHARS:
            weights[i] = (-3.0, 3.0)
        elif token in NEGATIVE_CHARS:
            weights[i] = (3.0, -3.0)
    return weights


def write_tiny_onnx(path: Path, weights: np.ndarray, *, with_token_types: bool = False) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    if with_token_types:
        inputs.append(
            helper.make_tensor_value_info(
                "token_type_ids", TensorProto.INT64, ["batch", "sequence"]
            )
        )
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["tok"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axis1"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["mean"]),
        helper.make_node("Mul", ["mean", "scale"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(weights, "embedding"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(4.0, dtype=np.float32), "scale"),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])]
    graph = helper.make_graph(nodes, "qinggan_tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_tiny_bundle(
    out_dir: str | Path, *, max_length: int = 64, with_token_types: bool = False, seed: int = 0
) -> Bundle:
    """Write the tiny bundle into ``out_dir`` (created if needed) and return it."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    write_tiny_tokenizer(root / "tokenizer.json", vocab)
    write_tiny_onnx(
        root / "model.onnx", tiny_weights(vocab, seed), with_token_types=with_token_types
    )
    return write_bundle(
        root,
        name="tiny-test",
        labels=["Negative", "Positive"],
        models={"fp32": "model.onnx"},
        max_length=max_length,
        source={"kind": "qinggan.testing", "note": "bag-of-characters test model"},
    )
