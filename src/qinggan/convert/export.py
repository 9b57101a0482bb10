"""PyTorch classifier -> ONNX graph with dynamic batch and sequence axes.

Exporter choice (torch 2.13): the TorchScript exporter (``dynamo=False``) with eager
attention gives a graph that ``onnxruntime.transformers``' BERT fusions turn into
``Attention``, ``SkipLayerNormalization`` and ``BiasGelu`` contrib ops (a 2-layer test
model shrinks from ~250 to ~40 nodes); the dynamo exporter's graph, which is otherwise
clean, does not match the attention fusion patterns, and ONNX Runtime's own session
optimiser does not fuse attention at all. If the TorchScript exporter is gone from a
future torch, we fall back to dynamo (correct, just slower to run).

Fusion runs offline with ``opt_level=0``, so the saved graph holds no machine-specific
kernels (no NCHWc layouts) and is portable; EmbedLayerNormalization stays unfused as
it does not mix with dynamic quantisation.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from ..onnx_tools import opset_of

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class LogitsOnly(torch.nn.Module):
    """Positional inputs in, ``logits`` out: the signature the bundle's graph has."""

    def __init__(self, model: torch.nn.Module, uses_token_types: bool) -> None:
        super().__init__()
        self.model = model
        self.uses_token_types = uses_token_types

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs: dict[str, torch.Tensor | None] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
        }
        if self.uses_token_types:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(**kwargs).logits


def sample_inputs(uses_token_types: bool, vocab_size: int) -> tuple[torch.Tensor, ...]:
    """A padded batch of two, so the traced graph sees a real attention mask."""
    high = max(vocab_size, 6)
    ids = torch.randint(5, high, (2, 11), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return (ids, mask, torch.zeros_like(ids)) if uses_token_types else (ids, mask)


def export_onnx(model: torch.nn.Module, path: Path, *, uses_token_types: bool) -> dict[str, Any]:
    """Export ``model`` (eval mode) to ``path``; returns how it was done."""
    wrapper = LogitsOnly(model, uses_token_types).eval()
    inputs = sample_inputs(uses_token_types, int(getattr(model.config, "vocab_size", 100)))
    names = list(INPUT_NAMES[: len(inputs)])
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer and deprecation chatter from torch is not actionable for the user.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                wrapper,
                inputs,
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
            exporter = "torchscript"
        except (RuntimeError, TypeError, ValueError, AttributeError, NotImplementedError):
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            shapes = {name: {0: batch, 1: sequence} for name in names}
            program = torch.onnx.export(
                wrapper,
                inputs,
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=shapes,
                opset_version=18,
                dynamo=True,
                verbose=False,
            )
            assert program is not None  # with dynamo=True the exporter returns the program
            program.save(str(path), external_data=False)
            exporter = "dynamo"
    return {
        "exporter": f"torch.onnx ({exporter}) {torch.__version__}",
        "opset": opset_of(path),
        "inputs": names,
    }


def fuse_transformer(src: Path, dst: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Apply ONNX Runtime's offline BERT fusions; returns the counts of fused operators."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_embed_layer_norm = False
    # Fusion passes log at WARNING about patterns they skip; that is expected, not news.
    logger = logging.getLogger("onnxruntime.transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            optimization_options=options,
            opt_level=0,
            use_gpu=False,
        )
        optimized.save_model_to_file(str(dst))
        stats = optimized.get_fused_operator_statistics()
    finally:
        logger.setLevel(level)
    return {op: int(n) for op, n in stats.items() if n}
