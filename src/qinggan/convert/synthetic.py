"""Random-initialised checkpoints in either layout, for tests and benchmarks.

:func:`make_random_checkpoint` writes a BERT sequence classifier with a real Chinese
character ``vocab.txt`` (specials, ASCII, punctuation, the CJK Unified Ideographs block),
padded with ``[unusedN]`` or cut to any requested size (21128 for StructBERT-base shape).

Why the head is not left random: a freshly initialised classifier puts almost every
text near a tie (logits within a few hundredths of each other), so int8 "agreement"
would measure coin flips rather than quantisation error. The head is instead pointed
along the main direction in which the pooled outputs of the built-in parity texts
differ, scaled to a logit spread of several units, with the decision boundary put in
the widest gap between those texts near their median. Texts then split between labels
with clear margins and agreement means what it says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoints import BERT_FIELDS
from .texts import BUILTIN_TEXTS

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PUNCTUATION = "，。！？、：；“”‘’（）《》【】…—～·!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
LOGIT_SPREAD = 3.0  # std of the logit margin over the calibration texts
# BERT's usual 0.02 leaves the [CLS] output of a random model almost the same for every
# text (near-uniform attention averages content away), so any head reads mostly noise.
# 0.1 makes the output depend on the text clearly enough for int8 agreement to mean
# something; measured on the 2-layer test shape, 0.02 gave ~84% agreement, 0.1 gave 100%.
INITIALIZER_RANGE = 0.1


def chinese_vocab(size: int | None = None) -> list[str]:
    """Specials, ASCII, punctuation and CJK characters; padded/cut to ``size`` if given."""
    tokens = list(SPECIALS)
    tokens += [str(d) for d in range(10)] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += [f"##{t}" for t in tokens[len(SPECIALS) :]]
    tokens += [c for c in PUNCTUATION if c not in tokens]
    tokens += [chr(c) for c in range(0x4E00, 0x9FA6)]  # 一 .. 龥
    if size is None:
        return tokens
    if size < len(SPECIALS) + 1:
        raise ValueError(f"vocab size {size} is too small")
    if size <= len(tokens):
        return tokens[:size]
    return tokens + [f"[unused{i}]" for i in range(1, size - len(tokens) + 1)]


def make_random_checkpoint(
    out_dir: str | Path,
    layout: str = "hf",
    *,
    num_layers: int = 2,
    hidden: int = 64,
    heads: int = 2,
    intermediate: int = 128,
    vocab: int | Sequence[str] | None = None,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
    max_positions: int = 512,
    backbone_prefix: str = "bert",
) -> Path:
    """Write a random BERT classifier checkpoint to ``out_dir`` and return the path.

    ``layout="hf"`` writes ``config.json``, ``model.safetensors``, ``tokenizer.json``,
    ``tokenizer_config.json`` and ``vocab.txt``. ``layout="modelscope"`` writes what a
    ModelScope StructBERT classifier has: ``configuration.json`` (labels in
    ``model.label2id``), a StructBERT ``config.json``, ``pytorch_model.bin`` with keys
    under ``backbone_prefix`` and ``vocab.txt``. ``vocab`` is a token list or a size.
    ``label_names`` default to ``Negative, Positive`` (hf) or ``负面, 正面`` (modelscope).
    """
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    if layout not in ("hf", "modelscope"):
        raise ValueError(f"layout must be 'hf' or 'modelscope', not {layout!r}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    tokens = (
        list(vocab) if vocab is not None and not isinstance(vocab, int) else chinese_vocab(vocab)
    )
    (root / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if label_names is None:
        label_names = ("Negative", "Positive") if layout == "hf" else ("负面", "正面")
    labels = list(label_names)

    torch.manual_seed(seed)
    config = BertConfig(  # type: ignore[call-arg]  # num_labels etc. are **kwargs
        vocab_size=len(tokens),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        initializer_range=INITIALIZER_RANGE,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model: Any = BertForSequenceClassification(config).eval()
    tokenizer = BertTokenizer(vocab=str(root / "vocab.txt"), do_lower_case=True)
    _spread_head(model, tokenizer, seed)

    if layout == "hf":
        model.save_pretrained(str(root))
        tokenizer.save_pretrained(str(root))
        return root

    _save_modelscope(root, model, labels, backbone_prefix, max_positions)
    return root


def _save_modelscope(
    root: Path,
    model: torch.nn.Module,
    labels: list[str],
    backbone_prefix: str,
    max_positions: int,
) -> None:
    """Write ``model`` as a ModelScope StructBERT classifier: ``pytorch_model.bin`` with
    keys under ``backbone_prefix``, a StructBERT ``config.json`` and ``configuration.json``."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith("bert."):
            key = (f"{backbone_prefix}." if backbone_prefix else "") + key[len("bert.") :]
        state[key] = tensor.clone()
    state[f"{backbone_prefix + '.' if backbone_prefix else ''}embeddings.position_ids"] = (
        torch.arange(max_positions).unsqueeze(0)
    )
    torch.save(state, root / "pytorch_model.bin")
    structbert = {
        "architectures": ["SbertForSequenceClassification"],
        "model_type": "structbert",
        **{k: getattr(model.config, k) for k in BERT_FIELDS if hasattr(model.config, k)},
        "position_embedding_type": "absolute",
    }
    if backbone_prefix != "bert":
        structbert["base_model_prefix"] = backbone_prefix
    configuration = {
        "framework": "pytorch",
        "task": "text-classification",
        "pipeline": {"type": "sentiment-classification"},
        "model": {"type": "structbert", "label2id": {n: i for i, n in enumerate(labels)}},
        "preprocessor": {"type": "sen-cls-tokenizer", "first_sequence": "sentence"},
    }
    for name, data in (("config.json", structbert), ("configuration.json", configuration)):
        (root / name).write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


@torch.no_grad()
def _spread_head(model: Any, tokenizer: object, seed: int) -> None:
    """Give the classifier a clear logit spread over the built-in texts (see module doc)."""
    pooled = []
    limits = sorted({min(n, model.config.max_position_embeddings) for n in (64, 128, 512)})
    sizes = {t: len(tokenizer(t)["input_ids"]) for t in BUILTIN_TEXTS}  # type: ignore[operator]
    shorter = 0
    for max_length in limits:
        # Length-sorted batches (little padding); texts that fit a smaller limit are done.
        texts = sorted((t for t in BUILTIN_TEXTS if sizes[t] > shorter), key=sizes.__getitem__)
        shorter = max_length
        for start in range(0, len(texts), 16):
            batch = tokenizer(  # type: ignore[operator]
                texts[start : start + 16],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            pooled.append(model.bert(**batch).pooler_output)
    points = torch.cat(pooled).double()
    centred = points - points.mean(dim=0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    score = centred @ direction
    scale = LOGIT_SPREAD / float(score.std())
    ordered = torch.sort(score).values
    middle = len(ordered) // 2
    window = ordered[middle // 2 : middle + middle // 2 + 1]  # the central half
    gaps = window[1:] - window[:-1]
    best = int(torch.argmax(gaps))
    threshold = float(window[best] + window[best + 1]) / 2
    num_labels = model.classifier.out_features
    weight = torch.zeros(num_labels, points.shape[1], dtype=torch.float64)
    bias = torch.zeros(num_labels, dtype=torch.float64)
    # Binary: margin = scale * (score - threshold). More labels: spread along random directions.
    generator = torch.Generator().manual_seed(seed)
    signs = torch.linspace(-1.0, 1.0, num_labels) if num_labels > 1 else torch.ones(1)
    for row in range(num_labels):
        weight[row] = signs[row] * scale / 2 * direction
        bias[row] = -signs[row] * scale / 2 * (threshold + float(points.mean(dim=0) @ direction))
        if num_labels > 2:
            weight[row] += torch.randn(
                points.shape[1], generator=generator, dtype=torch.float64
            ) * (scale / 4)
    model.classifier.weight.copy_(weight.float())
    model.classifier.bias.copy_(bias.float())
