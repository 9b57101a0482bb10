"""Read a checkpoint directory into a PyTorch classifier plus its tokenizer.

Two layouts are understood:

``hf``
    A Hugging Face sequence-classification directory: ``config.json``, weights
    (``model.safetensors`` or ``pytorch_model.bin``, sharded or not) and ``tokenizer.json``
    or ``vocab.txt``. Loaded with ``AutoModelForSequenceClassification``.
``modelscope``
    A ModelScope StructBERT text-classification directory (``configuration.json``,
    ``config.json``, ``pytorch_model.bin``, ``vocab.txt``). StructBERT is BERT: its modules
    carry BERT's names under a backbone prefix (``bert.`` by default, ``encoder.`` or none in
    some exports; ``configuration.json`` may name it in ``model.backbone.prefix``) and a
    ``classifier`` head (``head.classifier`` in backbone+head exports). The weights are
    mapped onto ``transformers.BertForSequenceClassification``; ModelScope is not needed.
    Labels are looked up in ModelScope's own order: ``configuration.json``
    ``dataset.train.labels``, ``label_mapping.json``, ``configuration.json`` ``model`` /
    ``model.backbone`` / ``preprocessor`` ``label2id``/``id2label``, then ``config.json``.

Any key left unmapped or missing is an error that names the keys: a checkpoint never
loads with silently random layers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..build_options import LAYOUTS
from ..errors import QingganError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
MODELSCOPE_CONFIG = "configuration.json"
MODELSCOPE_DEFAULT_MAX_LENGTH = 128  # ModelScope's text-classification preprocessor default
# Buffers some exports save and others do not; never real weights.
IGNORED_KEYS = re.compile(r"(^|\.)(position_ids|token_type_ids)$")
BERT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
    "position_embedding_type",
)


class CheckpointError(QingganError):
    """A checkpoint directory is missing, incomplete or not in a layout we can read."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: an fp32 eval-mode model and its tokenizers."""

    path: Path
    layout: str
    model: torch.nn.Module
    tokenizer: Any  # transformers tokenizer with a fast backend; its backend goes in the bundle
    reference_tokenizer: Any  # what the source framework tokenises with (for parity)
    source_labels: list[str]
    default_max_length: int
    max_positions: int
    uses_token_types: bool
    weights_file: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_heads(self) -> int:
        config: Any = self.model.config
        return int(config.num_attention_heads)

    @property
    def hidden_size(self) -> int:
        config: Any = self.model.config
        return int(config.hidden_size)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def detect_layout(src: Path) -> str:
    """``modelscope`` with ``configuration.json`` or a StructBERT ``config.json``, else ``hf``."""
    if (src / MODELSCOPE_CONFIG).is_file():
        return "modelscope"
    config = src / "config.json"
    if config.is_file():
        return "modelscope" if read_json(config).get("model_type") == "structbert" else "hf"
    raise CheckpointError(
        f"{src} has neither config.json (Hugging Face layout) nor {MODELSCOPE_CONFIG} "
        "(ModelScope layout); is it a checkpoint directory?"
    )


def find_weights(src: Path) -> str:
    for name in (*WEIGHT_FILES, *SHARD_INDEXES):
        if (src / name).is_file():
            return name
    raise CheckpointError(
        f"{src} has no weights: expected {' or '.join(WEIGHT_FILES)} (or a sharded index)"
    )


def load_checkpoint(src: str | Path, layout: str = "auto") -> Checkpoint:
    """Load the checkpoint at ``src`` in ``layout`` (``auto`` detects it)."""
    root = Path(src).expanduser()
    if layout not in LAYOUTS:
        raise CheckpointError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {str(root)!r} does not exist")
    if layout == "auto":
        layout = detect_layout(root)
    weights = find_weights(root)
    if layout == "hf":
        return _load_hf(root, weights)
    return _load_modelscope(root, weights)


# ----------------------------------------------------------------------------- tokenizers


def _vocab_tokenizers(vocab: Path, lower_case: bool) -> tuple[Any, Any]:
    """The fast tokenizer for the bundle and the pure-Python one ModelScope-era code used."""
    from transformers import BertTokenizer

    fast = BertTokenizer(vocab=str(vocab), do_lower_case=lower_case)
    try:  # transformers >= 5 keeps the original Python WordPiece as the "legacy" class
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    except ImportError:  # transformers 4: BertTokenizer is already the Python one
        return fast, fast
    return fast, BertTokenizerLegacy(vocab_file=str(vocab), do_lower_case=lower_case)


def _lower_case(root: Path) -> bool:
    config = root / "tokenizer_config.json"
    if config.is_file():
        return bool(read_json(config).get("do_lower_case", True))
    return True


def _hf_tokenizers(root: Path) -> tuple[Any, Any]:
    if (root / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(root), local_files_only=True)
        except Exception as exc:  # transformers raises OSError/ValueError/KeyError
            raise CheckpointError(f"cannot load the tokenizer in {root}: {exc}") from None
        if getattr(tokenizer, "backend_tokenizer", None) is None:
            raise CheckpointError(f"the tokenizer in {root} has no fast (tokenizers) backend")
        return tokenizer, tokenizer
    if (root / "vocab.txt").is_file():
        return _vocab_tokenizers(root / "vocab.txt", _lower_case(root))
    raise CheckpointError(f"{root} has no tokenizer: expected tokenizer.json or vocab.txt")


# ----------------------------------------------------------------------------- Hugging Face


def _load_hf(root: Path, weights: str) -> Checkpoint:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        config = AutoConfig.from_pretrained(str(root), local_files_only=True)
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            str(root),
            config=config,
            local_files_only=True,
            output_loading_info=True,
            attn_implementation="eager",
            dtype=torch.float32,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load the Hugging Face checkpoint in {root}: {exc}") from None
    _check_keys(
        root,
        missing=[k for k in loading.get("missing_keys", []) if not IGNORED_KEYS.search(k)],
        unexpected=[k for k in loading.get("unexpected_keys", []) if not IGNORED_KEYS.search(k)],
        mismatched=[str(k) for k in loading.get("mismatched_keys", [])],
    )
    tokenizer, reference = _hf_tokenizers(root)
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    max_positions = int(getattr(config, "max_position_embeddings", 512))
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    default_max = declared if 2 <= declared <= max_positions else min(512, max_positions)
    return _finish(root, "hf", model.eval(), tokenizer, reference, labels, default_max, weights)


# ----------------------------------------------------------------------------- ModelScope


def _modelscope_labels(root: Path, cfg: dict[str, Any], config: dict[str, Any]) -> list[str] | None:
    """Label names in id order, looked up where ModelScope looks, in its order."""
    train = (cfg.get("dataset") or {}).get("train") or {}
    if isinstance(train, dict) and isinstance(train.get("labels"), list):
        return [str(x) for x in train["labels"]]
    mapping = root / "label_mapping.json"
    candidates: list[dict[str, Any]] = []
    if mapping.is_file():
        candidates.append({"label2id": read_json(mapping)})
    model = cfg.get("model") or {}
    if isinstance(model, dict):
        candidates += [model, model.get("backbone") or {}]
    candidates += [cfg.get("preprocessor") or {}, config]
    for section in candidates:
        if not isinstance(section, dict):
            continue
        if isinstance(section.get("label2id"), dict) and section["label2id"]:
            by_id = {int(i): str(name) for name, i in section["label2id"].items()}
            return [by_id[i] for i in sorted(by_id)]
        if isinstance(section.get("id2label"), dict) and section["id2label"]:
            return [str(section["id2label"][k]) for k in sorted(section["id2label"], key=int)]
    return None


def _modelscope_max_length(cfg: dict[str, Any]) -> int | None:
    pre = cfg.get("preprocessor") or {}
    sections = [pre, pre.get("val") or {}] if isinstance(pre, dict) else []
    sections.append(cfg.get("pipeline") or {})
    for section in sections:
        for key in ("max_length", "sequence_length"):
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, int) and value >= 2:
                return value
    return None


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip/safetensors errors have no common base
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None
    for wrapper in ("state_dict", "model", "module"):  # training-loop checkpoints
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _backbone_prefix(state: dict[str, torch.Tensor], declared: str | None) -> str:
    """The prefix in front of ``embeddings.``/``encoder.``/``pooler.`` (``bert.`` usually)."""
    if declared is not None:
        declared = declared.rstrip(".")
        prefix = f"{declared}." if declared else ""
        if f"{prefix}embeddings.word_embeddings.weight" in state:
            return prefix
    suffix = "embeddings.word_embeddings.weight"
    found = [k[: -len(suffix)] for k in state if k.endswith(suffix)]
    if len(found) != 1:
        raise CheckpointError(
            f"cannot find the StructBERT/BERT word embeddings ('...{suffix}') in the weights"
            + (f"; found {len(found)} candidates: {found}" if found else "")
        )
    return found[0]


def map_structbert_keys(
    state: dict[str, torch.Tensor], declared_prefix: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Rename ModelScope StructBERT keys to ``BertForSequenceClassification`` keys.

    Returns the renamed state dict and a note of what was done. Keys that fit no rule
    are kept under their own name so the caller reports them as unexpected.
    """
    prefix = _backbone_prefix(state, declared_prefix)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if IGNORED_KEYS.search(key):
            continue
        new = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
        if new.startswith(prefix) and new[len(prefix) :].split(".")[0] in (
            "embeddings",
            "encoder",
            "pooler",
        ):
            new = "bert." + new[len(prefix) :]
        elif new.startswith("head.classifier."):
            new = new[len("head.") :]
        mapped[new] = tensor
    return mapped, {"backbone_prefix": prefix or "(none)"}


def _load_modelscope(root: Path, weights: str) -> Checkpoint:
    from transformers import BertConfig, BertForSequenceClassification

    if weights in SHARD_INDEXES:
        raise CheckpointError(
            f"{root}: sharded weights are not supported for the ModelScope layout"
        )
    cfg = read_json(root / MODELSCOPE_CONFIG) if (root / MODELSCOPE_CONFIG).is_file() else {}
    config_path = root / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    model_cfg: dict[str, Any] = cfg["model"] if isinstance(cfg.get("model"), dict) else {}
    backbone: dict[str, Any] = (
        model_cfg["backbone"] if isinstance(model_cfg.get("backbone"), dict) else {}
    )
    hyper = {**backbone, **config}
    if "hidden_size" not in hyper:
        raise CheckpointError(
            f"{root}: no model hyper-parameters found (config.json, or "
            f"{MODELSCOPE_CONFIG} model.backbone)"
        )
    if hyper.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{root}: position_embedding_type {hyper['position_embedding_type']!r} is not "
            "supported (only 'absolute')"
        )
    state = _load_state_dict(root / weights)
    declared = backbone.get("prefix", config.get("base_model_prefix"))
    mapped, note = map_structbert_keys(state, declared)
    if "classifier.weight" not in mapped:
        raise CheckpointError(
            f"{root / weights} has no classifier head (classifier.weight or "
            "head.classifier.weight); is this a text-classification checkpoint?"
        )
    num_labels = int(mapped["classifier.weight"].shape[0])
    labels = _modelscope_labels(root, cfg, config) or [f"LABEL_{i}" for i in range(num_labels)]
    if len(labels) != num_labels:
        raise CheckpointError(
            f"{root}: the label map names {len(labels)} labels ({', '.join(labels)}) but the "
            f"classifier has {num_labels} outputs"
        )
    fields = {k: hyper[k] for k in BERT_FIELDS if k in hyper}
    bert_config = BertConfig(  # type: ignore[call-arg]  # num_labels etc. are **kwargs
        **fields,
        num_labels=num_labels,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    bert_config._attn_implementation = "eager"
    model = BertForSequenceClassification(bert_config)
    expected = {k for k in model.state_dict() if not IGNORED_KEYS.search(k)}
    mismatched = [
        f"{k} {tuple(mapped[k].shape)} vs {tuple(model.state_dict()[k].shape)}"
        for k in expected & set(mapped)
        if mapped[k].shape != model.state_dict()[k].shape
    ]
    _check_keys(
        root,
        missing=sorted(expected - set(mapped)),
        unexpected=sorted(set(mapped) - expected),
        mismatched=mismatched,
    )
    model.load_state_dict(mapped, strict=False)
    if not (root / "vocab.txt").is_file() and not (root / "tokenizer.json").is_file():
        raise CheckpointError(f"{root} has no tokenizer: expected vocab.txt or tokenizer.json")
    tokenizer, reference = _hf_tokenizers(root)
    vocab_size = len(tokenizer.get_vocab())
    if vocab_size > bert_config.vocab_size:
        raise CheckpointError(
            f"{root}: the vocabulary has {vocab_size} tokens but the model only "
            f"{bert_config.vocab_size} embeddings"
        )
    max_positions = int(bert_config.max_position_embeddings)
    default_max = min(_modelscope_max_length(cfg) or MODELSCOPE_DEFAULT_MAX_LENGTH, max_positions)
    checkpoint = _finish(
        root, "modelscope", model.eval(), tokenizer, reference, labels, default_max, weights
    )
    checkpoint.info.update(note, model_type=f"{hyper.get('model_type', 'structbert')} (as bert)")
    return checkpoint


# ----------------------------------------------------------------------------- shared


def _check_keys(
    root: Path, *, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> None:
    def listing(keys: list[str]) -> str:
        shown = ", ".join(keys[:6])
        return shown + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")

    problems = []
    if missing:
        problems.append(f"missing {len(missing)} weight(s): {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} weight(s): {listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {listing(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{root}: the weights do not fit a BERT sequence classifier: {'; '.join(problems)}"
        )


def _finish(
    root: Path,
    layout: str,
    model: torch.nn.Module,
    tokenizer: Any,
    reference: Any,
    labels: list[str],
    default_max: int,
    weights: str,
) -> Checkpoint:
    import inspect

    config: Any = model.config
    uses_token_types = (
        "token_type_ids" in inspect.signature(model.forward).parameters
        and int(getattr(config, "type_vocab_size", 0) or 0) >= 1
    )
    return Checkpoint(
        path=root,
        layout=layout,
        model=model,
        tokenizer=tokenizer,
        reference_tokenizer=reference,
        source_labels=labels,
        default_max_length=default_max,
        max_positions=int(getattr(config, "max_position_embeddings", default_max)),
        uses_token_types=uses_token_types,
        weights_file=weights,
        info={
            "model_type": getattr(config, "model_type", "bert"),
            "num_layers": int(getattr(config, "num_hidden_layers", 0)),
            "hidden_size": int(config.hidden_size),
            "num_heads": int(getattr(config, "num_attention_heads", 0)),
            "vocab_size": int(getattr(config, "vocab_size", 0)),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
    )
