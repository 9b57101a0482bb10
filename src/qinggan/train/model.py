"""An XLM-RoBERTa-shaped encoder in plain torch, loadable from the e5 image, plus the
sentiment head (masked mean pooling -> dropout -> linear).

Written out (rather than ``transformers.XLMRobertaModel``) so that the graph exported to
ONNX is exactly what is trained: two inputs, ``input_ids`` and ``attention_mask``, and
one output, ``logits``. Positions are ``0..L-1`` into the file's 512-row table (the
file's row 0 is XLM-R's position 2, the first real token), which equals XLM-R's
position ids for right-padded batches.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import QingganError
from .e5 import E5Image


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int
    hidden: int = 384
    layers: int = 12
    heads: int = 12
    ffn: int = 1536
    positions: int = 512
    eps: float = 1e-12
    pad_id: int = 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.hidden // cfg.heads
        self.q = nn.Linear(cfg.hidden, cfg.hidden)
        self.k = nn.Linear(cfg.hidden, cfg.hidden)
        self.v = nn.Linear(cfg.hidden, cfg.hidden)
        self.ao = nn.Linear(cfg.hidden, cfg.hidden)
        self.aln = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.fi = nn.Linear(cfg.hidden, cfg.ffn)
        self.fo = nn.Linear(cfg.ffn, cfg.hidden)
        self.oln = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.dropout = nn.Dropout(0.1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        return x.view(b, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, hidden = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + bias
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, length, hidden)
        x = self.aln(x + self.dropout(self.ao(ctx)))
        return self.oln(x + self.dropout(self.fo(F.gelu(self.fi(x)))))


class Encoder(nn.Module):
    """Embeddings (word + position + token type 0, LayerNorm) and the transformer layers."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=cfg.pad_id)
        self.pos = nn.Embedding(cfg.positions, cfg.hidden)
        self.token_type = nn.Parameter(torch.zeros(cfg.hidden))
        self.eln = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.dropout = nn.Dropout(0.1)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
        x = self.eln(self.word(input_ids) + self.pos(positions) + self.token_type)
        x = self.dropout(x)
        mask = attention_mask.to(x.dtype)
        bias = ((1.0 - mask) * torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return x


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class SentimentModel(nn.Module):
    """Encoder -> masked mean pooling -> dropout -> linear; returns logits."""

    def __init__(self, cfg: EncoderConfig, num_labels: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = mean_pool(self.encoder(input_ids, attention_mask), attention_mask)
        return self.head(self.dropout(pooled))


def load_e5_weights(encoder: Encoder, image: E5Image, kept_ids: list[int] | None = None) -> None:
    """Copy the image's weights into ``encoder`` (its first ``cfg.layers`` layers).

    ``kept_ids`` (new id -> old id) selects and reorders embedding rows for a pruned
    vocabulary.
    """
    cfg, src = encoder.cfg, image.config
    hidden = src.hidden
    t = image.tensors

    def tensor(name: str, *shape: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(t[name].reshape(*shape)))

    word = t["emb.word"].reshape(src.vocab_rows, hidden)
    if kept_ids is not None:
        word = word[np.asarray(kept_ids)]
    if word.shape[0] != cfg.vocab_size:
        raise ValueError(f"vocab size {cfg.vocab_size} != {word.shape[0]} embedding rows")
    with torch.no_grad():
        encoder.word.weight.copy_(torch.from_numpy(np.ascontiguousarray(word)))
        encoder.pos.weight.copy_(tensor("emb.pos", src.positions, hidden)[: cfg.positions])
        encoder.token_type.copy_(tensor("emb.type", src.type_vocab, hidden)[0])
        encoder.eln.weight.copy_(tensor("emb.ln.w", hidden))
        encoder.eln.bias.copy_(tensor("emb.ln.b", hidden))
        for index, layer in enumerate(cast(list[EncoderLayer], list(encoder.layers))):
            p = f"l{index}."
            for name, module in (("q", layer.q), ("k", layer.k), ("v", layer.v), ("ao", layer.ao)):
                module.weight.copy_(tensor(p + name + ".w", hidden, hidden))
                module.bias.copy_(tensor(p + name + ".b", hidden))
            layer.fi.weight.copy_(tensor(p + "fi.w", src.ffn, hidden))
            layer.fi.bias.copy_(tensor(p + "fi.b", src.ffn))
            layer.fo.weight.copy_(tensor(p + "fo.w", hidden, src.ffn))
            layer.fo.bias.copy_(tensor(p + "fo.b", hidden))
            for name, norm in (("aln", layer.aln), ("oln", layer.oln)):
                norm.weight.copy_(tensor(p + name + ".w", hidden))
                norm.bias.copy_(tensor(p + name + ".b", hidden))


def encoder_config_for(image: E5Image, vocab_size: int, layers: int) -> EncoderConfig:
    src = image.config
    if not 1 <= layers <= src.layers:
        raise ValueError(f"layers must be between 1 and {src.layers}, got {layers}")
    return EncoderConfig(
        vocab_size=vocab_size,
        hidden=src.hidden,
        layers=layers,
        heads=src.heads,
        ffn=src.ffn,
        positions=src.positions,
        eps=src.eps,
    )


def weights_file(run_dir: Path) -> Path:
    """Where ``qinggan train`` saves a run's best weights: ``OUT.pt`` beside ``OUT/``."""
    return run_dir.parent / f"{run_dir.name}.pt"


def load_saved(path: str | Path) -> dict[str, Any]:
    """A weights file written by ``qinggan train`` (``OUT.pt``: ``state_dict``, ``encoder``)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise QingganError(f"{path}: not a weights file saved by qinggan train ({exc})") from exc
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise QingganError(f"{path}: not a weights file saved by qinggan train")
    return saved
