"""The e5 unigram tokenizer as a Hugging Face ``tokenizer.json``, and vocabulary pruning.

The engine's pipeline is: per-codepoint normalisation map (nmt_nfkc-like), collapse runs
of spaces, Metaspace ``▁`` prepended to the whole string (no splitting on spaces), one
Viterbi pass over the unigram pieces, ``<s> … </s>``. We express the map as NFKC plus the
few codepoints where the map and NFKC disagree:

* control characters the map deletes or turns into a space (NFKC keeps them);
* BMP characters NFKC changes but the map leaves alone (e.g. U+FF5E ``～``): they are
  swapped to private-use stand-ins before NFKC and back afterwards.

Supplementary-plane characters of the second kind (U+107xx modifier letters, U+1FBFx
segmented digits) and NFKC's canonical composition of combining sequences are not
reproduced; neither occurs in ordinary Chinese reviews.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from .e5 import E5Image

METASPACE = "▁"
PRIVATE_USE_BASE = 0xF0000  # plane-15 private use: never produced by NFKC


def _char_class(codepoints: Iterable[int]) -> str:
    return "[" + "".join(re.escape(chr(c)) for c in sorted(codepoints)) + "]"


def build_normalizer(norm_map: dict[int, str]) -> normalizers.Normalizer:
    """A ``tokenizers`` normaliser equivalent to the engine's map on ordinary text."""
    steps: list[normalizers.Normalizer] = []
    by_output: dict[str, list[int]] = {}
    for cp, out in norm_map.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            by_output.setdefault(out, []).append(cp)
    protected = [
        cp
        for cp in range(0x10000)
        if not 0xD800 <= cp < 0xE000
        and cp not in norm_map
        and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)
    ]
    for out, cps in sorted(by_output.items()):
        steps.append(normalizers.Replace(Regex(_char_class(cps)), out))
    for i, cp in enumerate(protected):
        steps.append(normalizers.Replace(chr(cp), chr(PRIVATE_USE_BASE + i)))
    steps.append(normalizers.NFKC())
    for i, cp in enumerate(protected):
        steps.append(normalizers.Replace(chr(PRIVATE_USE_BASE + i), chr(cp)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


@dataclass(frozen=True)
class Vocab:
    """Pieces with their unigram scores; index = token id."""

    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


def full_vocab(image: E5Image) -> Vocab:
    return Vocab(
        list(image.pieces),
        [float(s) for s in image.scores],
        image.bos_id,
        image.eos_id,
        image.pad_id,
        image.unk_id,
    )


def build_tokenizer(vocab: Vocab, norm_map: dict[int, str]) -> Tokenizer:
    """The HF ``tokenizers`` equivalent of the engine's tokenizer for ``vocab``."""
    model = Unigram(list(zip(vocab.pieces, vocab.scores, strict=True)), unk_id=vocab.unk_id)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = build_normalizer(norm_map)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=False
    )
    tokenizer.decoder = decoders.Metaspace(
        replacement=METASPACE, prepend_scheme="always", split=False
    )
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)],
    )
    return tokenizer


def prune_vocab(
    vocab: Vocab, tokenizer: Tokenizer, texts: Sequence[str], prefix: str = ""
) -> tuple[Vocab, list[int]]:
    """Keep the specials, every single-character piece and every piece ``texts`` use.

    Returns the pruned vocabulary and ``kept``: new id -> old id (use it to slice the
    embedding matrix). Specials keep their ids (0..3), so pad stays 1.
    """
    used: set[int] = set()
    for start in range(0, len(texts), 4096):
        chunk = [prefix + t for t in texts[start : start + 4096]]
        for enc in tokenizer.encode_batch(chunk):
            used.update(enc.ids)
    specials = [vocab.bos_id, vocab.pad_id, vocab.eos_id, vocab.unk_id]
    kept = list(specials)
    seen = set(kept)
    for old_id, piece in enumerate(vocab.pieces):
        if old_id in seen:
            continue
        if old_id in used or len(piece) == 1:
            kept.append(old_id)
            seen.add(old_id)
    pruned = Vocab(
        [vocab.pieces[i] for i in kept],
        [vocab.scores[i] for i in kept],
        bos_id=0,
        pad_id=1,
        eos_id=2,
        unk_id=3,
    )
    if specials != [0, 1, 2, 3]:
        raise ValueError(f"unexpected special ids {specials}")
    return pruned, kept
