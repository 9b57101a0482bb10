"""qinggan (情感): fast, offline Chinese sentiment analysis on the CPU.

>>> import qinggan
>>> clf = qinggan.load()              # the built-in model; or a bundle path
>>> clf("这家酒店服务很好，下次还来").label
'Positive'
"""

from __future__ import annotations

from .bundle import Bundle, Manifest, load_bundle
from .engine import Classifier, Prediction, load
from .errors import BundleError, QingganError, TextTooLongError
from .settings import LoadOptions

__version__ = "0.1.0"

__all__ = [
    "Bundle",
    "BundleError",
    "Classifier",
    "LoadOptions",
    "Manifest",
    "Prediction",
    "QingganError",
    "TextTooLongError",
    "__version__",
    "load",
    "load_bundle",
]
