"""Checkpoint converter: Hugging Face / ModelScope classifiers -> verified qinggan bundles.

Needs the ``convert`` extra (torch, transformers, onnx, onnxscript); nothing on the
serving path imports this package.

>>> from qinggan.convert import convert_checkpoint
>>> convert_checkpoint("checkpoints/structbert-sentiment", "bundles/structbert")  # doctest: +SKIP
"""

from __future__ import annotations

from ..errors import MissingExtraError

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingExtraError("qinggan convert", "convert", exc.name or "torch") from None

from ..build_options import FP32_TOLERANCE, INT8_MIN_AGREEMENT, ConvertOptions
from .checkpoints import CheckpointError, load_checkpoint
from .converter import Conversion, ParityError, convert_checkpoint
from .labels import map_labels
from .parity import ParityReport
from .synthetic import make_random_checkpoint

__all__ = [
    "FP32_TOLERANCE",
    "INT8_MIN_AGREEMENT",
    "CheckpointError",
    "Conversion",
    "ConvertOptions",
    "ParityError",
    "ParityReport",
    "convert_checkpoint",
    "load_checkpoint",
    "make_random_checkpoint",
    "map_labels",
]
