"""The benchmark's models, generated at bench time (never stored in the repo).

A StructBERT-base-shaped classifier with random weights (12 layers, hidden 768, 12 heads,
intermediate 3072, vocab 21128, 2 labels) in Hugging Face layout for the original stack,
and the same weights as a qinggan bundle with fp32 and int8 ONNX graphs.

``qinggan.convert`` (``make_random_checkpoint`` / ``convert_checkpoint``) is used when it is
installed; otherwise a local stand-in below builds the same thing. Results are cached under
``bench/.cache/models/<shape>/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "models"
LABELS = ("Negative", "Positive")


@dataclass(frozen=True)
class Shape:
    num_layers: int = 12
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    vocab: int = 21128
    max_length: int = 512

    @property
    def key(self) -> str:
        return f"L{self.num_layers}-H{self.hidden}-A{self.heads}-I{self.intermediate}-V{self.vocab}"


BASE = Shape()
SMALL = Shape(num_layers=2, hidden=128, heads=2, intermediate=512)


@dataclass(frozen=True)
class Prepared:
    """Paths of the generated checkpoint (HF layout) and the qinggan bundle made from it."""

    shape: Shape
    hf_dir: Path
    bundle_dir: Path
    converter: str
    parity: dict


def prepare(shape: Shape = BASE, cache: Path = CACHE, *, force: bool = False) -> Prepared:
    """Generate (or reuse) the random checkpoint and its fp32+int8 bundle."""
    root = cache / shape.key
    hf_dir, bundle_dir, stamp = root / "hf", root / "bundle", root / "prepared.json"
    if stamp.is_file() and not force:
        info = json.loads(stamp.read_text())
        return Prepared(shape, hf_dir, bundle_dir, info["converter"], info.get("parity", {}))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    parity: dict = {}
    try:
        from qinggan.convert import convert_checkpoint, make_random_checkpoint
    except ImportError:
        converter = "bench/models.py stand-in (qinggan.convert not available)"
        _make_checkpoint(hf_dir, shape)
        _make_bundle(hf_dir, bundle_dir, shape)
    else:
        converter = "qinggan.convert"
        make_random_checkpoint(
            hf_dir,
            layout="hf",
            num_layers=shape.num_layers,
            hidden=shape.hidden,
            heads=shape.heads,
            intermediate=shape.intermediate,
            vocab=shape.vocab,
            max_positions=shape.max_length,
        )
        # Random weights: keep int8 even if its agreement gate would refuse it; the
        # benchmark reports the agreement next to every int8 figure instead.
        conversion = convert_checkpoint(hf_dir, bundle_dir, int8=True, force_int8=True)
        parity = conversion.report.to_dict()
    info = {"shape": asdict(shape), "converter": converter, "parity": parity}
    stamp.write_text(json.dumps(info, indent=2))
    return Prepared(shape, hf_dir, bundle_dir, converter, parity)


# --- local stand-in, used until qinggan.convert lands ---------------------------------


def _vocab(size: int) -> list[str]:
    """A BERT-Chinese-like vocab: specials, ASCII, CJK punctuation, then CJK ideographs."""
    tokens = [
        "[PAD]",
        *(f"[unused{i}]" for i in range(1, 100)),
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    tokens += [chr(c) for c in range(33, 127)]
    tokens += list("，。！？、：；“”‘’（）《》【】…—～·「」")
    cjk = (chr(c) for c in range(0x4E00, 0xA000))
    seen = set(tokens)
    for ch in cjk:
        if len(tokens) >= size:
            break
        if ch not in seen:
            tokens.append(ch)
    filler = 0
    while len(tokens) < size:
        tokens.append(f"##{filler}")
        filler += 1
    return tokens[:size]


def _make_checkpoint(out: Path, shape: Shape) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from qinggan.testing import write_tiny_tokenizer  # a BERT-Chinese WordPiece for any vocab

    out.mkdir(parents=True, exist_ok=True)
    vocab = _vocab(shape.vocab)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    write_tiny_tokenizer(out / "tokenizer.json", vocab)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(out / "tokenizer.json"),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=shape.max_length,
    )
    tokenizer.save_pretrained(out)
    config = BertConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_length,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    torch.manual_seed(20261124)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(out)


def _make_bundle(hf_dir: Path, out: Path, shape: Shape) -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertForSequenceClassification

    from qinggan.bundle import write_bundle

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(hf_dir / "tokenizer.json", out / "tokenizer.json")
    model = BertForSequenceClassification.from_pretrained(hf_dir).eval()
    model.config.return_dict = False
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask),
            str(out / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    quantize_dynamic(
        str(out / "model.onnx"),
        str(out / "model.int8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    write_bundle(
        out,
        name=f"structbert-base-random-{shape.key}",
        labels=list(LABELS),
        models={"fp32": "model.onnx", "int8": "model.int8.onnx"},
        max_length=shape.max_length,
        source={"kind": "random", "shape": asdict(shape), "made_by": "bench/models.py"},
    )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a 2-layer model, for debugging")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args()
    print(prepare(SMALL if args.small else BASE, force=args.force))
