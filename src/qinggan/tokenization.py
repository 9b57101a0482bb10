"""Text -> token ids with Hugging Face ``tokenizers``, and padded batches for ONNX Runtime.

One loader for every bundle: it reads ``tokenizer.json``, turns the file's own padding
off (we pad per batch, to the longest member) and truncates to the bundle's
``max_length``, remembering which texts were cut so callers can report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .errors import BundleError, TextTooLongError

PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenised text: its ids (after truncation) and whether anything was cut."""

    ids: list[int]
    truncated: bool

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def windows(self) -> int:  # a text read in one piece (see qinggan.windows.Windowed)
        return 1


class TextEncoder:
    """Tokenises texts for one bundle."""

    def __init__(self, tokenizer_path: Path, max_length: int, prefix: str = "") -> None:
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises bare Exception on bad JSON
            raise BundleError(f"cannot read tokenizer {tokenizer_path.name}: {exc}") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.prefix = prefix
        self.pad_id = self._find_pad_id(tokenizer)
        self._whole: Tokenizer | None = None  # an untruncated copy, made for the first long text
        self.overhead_tokens = len(tokenizer.encode(prefix, add_special_tokens=True).ids)

    @staticmethod
    def _find_pad_id(tokenizer: Tokenizer) -> int:
        for token in PAD_TOKENS:
            token_id = tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def encode(self, texts: Sequence[str], *, truncate: bool = True) -> list[Encoded]:
        """Tokenise ``texts``; with ``truncate=False`` an over-long text raises."""
        if self.prefix:
            texts = [self.prefix + t for t in texts]
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        out = [Encoded(e.ids, bool(e.overflowing)) for e in encodings]
        if not truncate:
            for index, item in enumerate(out):
                if item.truncated:
                    raise TextTooLongError(index, self.count_tokens(texts[index]), self.max_length)
        return out

    def count_tokens(self, text: str) -> int:
        """Number of tokens ``text`` would have without truncation (special tokens included)."""
        self._tokenizer.no_truncation()
        try:
            return len(self._tokenizer.encode(text).ids)
        finally:
            self._tokenizer.enable_truncation(max_length=self.max_length)

    def content_offsets(self, text: str) -> list[tuple[int, int]]:
        """Code point spans in ``text`` of all its tokens, untruncated, without special or
        prefix tokens (what :mod:`qinggan.windows` cuts long texts by)."""
        if self._whole is None:
            whole = Tokenizer.from_str(self._tokenizer.to_str())
            whole.no_truncation()
            self._whole = whole
        encoding = self._whole.encode(self.prefix + text, add_special_tokens=False)
        shift = len(self.prefix)
        return [
            (max(0, begin - shift), end - shift)
            for begin, end in encoding.offsets
            if end > shift and end > begin
        ]

    def pad(self, batch: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
        """Stack ``batch`` into ``input_ids`` and ``attention_mask``, padded to its longest."""
        width = max(1, max(len(e.ids) for e in batch))  # a text may encode to nothing
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, enc in enumerate(batch):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        return ids, mask
