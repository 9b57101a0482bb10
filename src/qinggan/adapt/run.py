"""One adapt run: data -> new members -> candidate blends -> choice -> bundle, in a budget.

The steps, each on the progress bar: read and check the data and split off validation
rows; load the base and find its members; extract the encoder's pooled features (one
forward pass per text: the user's rows, the replayed review rows, the guard rows); fit
the new head and the new n-gram model; blend and choose on validation; compare before and
after; write the bundle atomically and check that it scores as the chosen blend did.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, load_bundle, resolve_model
from ..engine import Classifier, default_threads, load, softmax
from ..ensemble import mix, sharpen
from ..settings import LoadOptions
from .budget import Budget
from .config import AdaptOptions
from .data import Labelled, Row, is_store, read_source, split
from .features import FeatureExtractor
from .methods import (
    HEAD_REPLAY_SHARE,
    NGRAM_C,
    NGRAM_REPLAY_SHARE,
    OOF_FOLDS,
    Candidate,
    Head,
    Member,
    candidates,
    fit_head,
    replay_weights,
)
from .ngram import NgramFit, fit_ngram
from .report import scores
from .select import choose
from .write import atomic_dir, check_out, check_parity, write_adapted

STEPS = 8
PARITY_ROWS = 200
GENERAL_TEST = ("chnsenticorp", "test")


@dataclass
class Parts:
    """Texts and label indexes of each part: train, val, replay, guard (and general)."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, rows: Sequence[Row]) -> None:
        self.texts[name] = [r.text for r in rows]
        self.labels[name] = np.array([r.label for r in rows], dtype=np.int64)


@dataclass
class Result:
    out: Path
    chosen: Candidate
    others: list[Candidate]
    report: dict[str, dict[str, Any]]
    notes: list[str]
    seconds: float


class Encoder:
    """The base's encoder member: features and its own logits per part, computed once."""

    def __init__(self, bundle: Bundle, threads: int) -> None:
        self.extractor = FeatureExtractor(bundle, threads)
        self.temperature = float(bundle.manifest.temperature)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, part: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if part not in self._cache:
            self._cache[part] = self.extractor(texts)
        return self._cache[part]


class BaseScorer:
    """The base model's probabilities per part: from its members' cached outputs when it
    simply averages them (or is one graph), else by running it (a cascade, say)."""

    def __init__(self, base: Bundle, encoder: Encoder | None, ngram: Classifier | None,
                 threads: int) -> None:  # fmt: skip
        self.base, self.encoder, self.ngram, self.threads = base, encoder, ngram, threads
        self._model: Any = None

    def __call__(self, part: str, texts: Sequence[str]) -> np.ndarray:
        m, encoder = self.base.manifest, self.encoder
        if not m.members and encoder is not None:
            return softmax(encoder(part, texts)[1] / encoder.temperature)
        kinds = [b.manifest.inputs for b in self.base.members]
        if encoder is not None and self.ngram is not None and not m.gate and len(kinds) == 2:
            probs = [
                softmax(encoder(part, texts)[1] / encoder.temperature)
                if "attention_mask" in inputs
                else predictor_probs(self.ngram, texts)
                for inputs in kinds
            ]
            weights = np.array([float(x.get("weight", 1.0)) for x in m.members])
            return sharpen(mix(probs, weights), float(m.temperature))
        if self._model is None:
            self._model = load(self.base.path, threads=self.threads)
        return predictor_probs(self._model, texts)


def base_members(bundle: Bundle) -> tuple[Bundle | None, Bundle | None]:
    """The base's (encoder, n-gram) member bundles; either may be absent."""
    parts = bundle.members or (bundle,)
    encoder = next((b for b in parts if "attention_mask" in b.manifest.inputs), None)
    ngram = next((b for b in parts if tuple(b.manifest.inputs) == ("input_ids",)), None)
    return encoder, ngram


def replay_rows(opts: AdaptOptions, labels: tuple[str, ...]) -> tuple[list[Row], list[Row]]:
    """A seeded sample of the built-ins' train rows (replay) and dev rows (guard)."""
    from ..train.data import read_split

    if not opts.data_dir or not {"Negative", "Positive"} <= set(labels):
        return [], []
    index = {0: labels.index("Negative"), 1: labels.index("Positive")}
    rng = random.Random(opts.seed)
    train = read_split(opts.data_dir, "train")
    dev = read_split(opts.data_dir, "dev")
    replay = rng.sample(train, min(len(train), opts.ngram_replay_rows))
    guard = rng.sample(dev, min(len(dev), opts.guard_rows))
    return [Row(e.text, index[e.label]) for e in replay], [
        Row(e.text, index[e.label]) for e in guard
    ]


def general_rows(opts: AdaptOptions, labels: tuple[str, ...]) -> list[Row]:
    from ..train.data import read_labelled as read_binary

    if not opts.data_dir or not {"Negative", "Positive"} <= set(labels):
        return []
    path = Path(opts.data_dir) / GENERAL_TEST[0] / f"{GENERAL_TEST[1]}.csv.gz"
    if not path.is_file():
        return []
    index = {0: labels.index("Negative"), 1: labels.index("Positive")}
    return [Row(e.text, index[e.label]) for e in read_binary(path)]


def predictor_probs(clf: Any, texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, len(clf.labels)))
    return np.array([[p.scores[label] for label in clf.labels] for p in clf.predict(texts)])


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A stratified, seeded fold number for every training row."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        out[rows] = np.arange(len(rows)) % folds
    return out


def new_members(
    parts: Parts, encoder: Encoder | None, n_labels: int, head_replay: int, seed: int
) -> dict[str, Member]:
    """The new head (when the base has an encoder) and the new n-gram model, fitted on every
    training row, with out-of-fold probabilities of the training rows (``oof``) from fits
    that did not see them: blends are weighed and calibrated on many rows, not a few."""
    scored: list[str] = [p for p in ("val", "guard") if p in parts.texts]
    train_texts, train_y = parts.texts["train"], parts.labels["train"]
    replay_texts = parts.texts.get("replay", [])
    replay_y = parts.labels.get("replay", np.zeros(0, dtype=np.int64))
    fits: dict[str, Callable[[np.ndarray], Any]] = {}
    scorers: dict[str, Callable[[Any, str], np.ndarray]] = {}
    if encoder is not None:
        train_x = encoder("train", train_texts)[0]
        replay_x = encoder("replay", replay_texts[:head_replay])[0] if replay_texts else None

        def head_fit(rows: np.ndarray) -> Head:
            blocks = [train_x[rows]] if replay_x is None else [train_x[rows], replay_x]
            y = np.concatenate([train_y[rows], replay_y[:head_replay]])
            w = replay_weights(len(rows), len(y) - len(rows), HEAD_REPLAY_SHARE)
            return fit_head(np.vstack(blocks), y, w, n_labels, seed)

        fits["head"] = head_fit
        scorers["head"] = lambda fit, part: softmax(fit.logits(encoder(part, parts.texts[part])[0]))

    def ngram_fit(rows: np.ndarray) -> NgramFit:
        texts = [train_texts[i] for i in rows] + replay_texts
        y = np.concatenate([train_y[rows], replay_y])
        w = replay_weights(len(rows), len(replay_texts), NGRAM_REPLAY_SHARE)
        return fit_ngram(texts, y, w, n_labels, NGRAM_C, seed)

    fits["ngram"] = ngram_fit
    scorers["ngram"] = lambda fit, part: softmax(fit.logits(parts.texts[part]))
    folds = fold_ids(train_y, OOF_FOLDS, seed)
    out: dict[str, Member] = {}
    for kind, fit in fits.items():
        oof = np.zeros((len(train_y), n_labels))
        for fold in range(OOF_FOLDS):
            held = np.flatnonzero(folds == fold)
            fitted = fit(np.flatnonzero(folds != fold))
            oof[held] = _score_rows(kind, fitted, encoder, train_texts, held)
        final = fit(np.arange(len(train_y)))
        probs = {p: scorers[kind](final, p) for p in scored}
        out[kind] = Member(kind, {**probs, "oof": oof}, final)
    return out


def _score_rows(kind: str, fitted: Any, encoder: Encoder | None, texts: list[str],
                rows: np.ndarray) -> np.ndarray:  # fmt: skip
    if kind == "head" and encoder is not None:
        return softmax(fitted.logits(encoder("train", texts)[0][rows]))
    return softmax(fitted.logits([texts[i] for i in rows]))


def old_members(
    parts: Parts, encoder: Encoder | None, ngram: Classifier | None
) -> dict[str, Member]:
    """The base's own members, scored on the same parts (only when the labels match)."""
    scored: list[str] = [p for p in ("val", "guard", "train") if p in parts.texts]
    out: dict[str, Member] = {}
    if encoder is not None:
        probs = {p: softmax(encoder(p, parts.texts[p])[1] / encoder.temperature) for p in scored}
        out["base-encoder"] = Member("base-encoder", probs)
    if ngram is not None:
        out["base-ngram"] = Member(
            "base-ngram", {p: predictor_probs(ngram, parts.texts[p]) for p in scored}
        )
    for member in out.values():  # the base never saw the user's rows: all are held out
        member.probs["oof"] = member.probs.pop("train")
    return out


def member_scorer(
    member: Member, encoder: Encoder | None, ngram: Classifier | None
) -> Callable[[str, Sequence[str]], np.ndarray]:
    """Score a new part (e.g. ChnSentiCorp test) with one chosen member."""
    from .ngram import NgramFit

    def score(part: str, texts: Sequence[str]) -> np.ndarray:
        if member.kind == "head" and encoder is not None:
            return softmax(member.fitted.logits(encoder(part, texts)[0]))
        if member.kind == "base-encoder" and encoder is not None:
            return softmax(encoder(part, texts)[1] / encoder.temperature)
        if member.kind == "ngram" and isinstance(member.fitted, NgramFit):
            return softmax(member.fitted.logits(texts))
        return predictor_probs(ngram, texts)

    return score


def adapt(opts: AdaptOptions, *, progress: bool = True) -> Result:
    """Adapt ``opts.base`` to the labelled texts in ``opts.data`` and write ``opts.out``."""
    started = time.perf_counter()
    out = Path(opts.out).expanduser().absolute()
    check_out(out, opts.overwrite)
    threads = opts.threads or default_threads()
    notes: list[str] = []
    with Budget(opts.minutes, STEPS, enabled=progress) as budget:
        budget.step("reading the data")
        data = read_source(opts.data, text_column=opts.text_column,
                             label_column=opts.label_column, labels=opts.labels)  # fmt: skip
        train, val = split(data, opts.val_fraction, opts.seed)
        parts = Parts()
        parts.add("train", train)
        parts.add("val", val)
        budget.step("loading the base")
        base = load_bundle(resolve_model(opts.base))
        comparable = tuple(base.manifest.labels) == data.labels
        encoder_bundle, ngram_bundle = base_members(base)
        replay, guard = replay_rows(opts, data.labels)
        if replay:
            parts.add("replay", replay)
            parts.add("guard", guard)
        else:
            notes.append(_no_replay_note(opts, data.labels))
        if data.conflicting:
            notes.append(f"{data.conflicting} texts had two labels; all their rows were dropped")
        encoder = Encoder(encoder_bundle, threads) if encoder_bundle is not None else None
        ngram = (
            Classifier(ngram_bundle, LoadOptions(threads=threads))
            if ngram_bundle and comparable
            else None
        )
        base_clf = BaseScorer(base, encoder, ngram, threads) if comparable else None
        budget.step("encoding texts")
        if encoder is not None:
            for part in parts.texts:
                encoder(part, parts.texts[part][: opts.head_replay_rows] if part == "replay"
                        else parts.texts[part])  # fmt: skip
        budget.step("fitting the new members")
        members = new_members(parts, encoder, len(data.labels), opts.head_replay_rows, opts.seed)
        if comparable:
            members_old = old_members(parts, encoder, ngram)
        else:
            members_old = {}
            notes.append(f"labels {list(data.labels)} differ from the base's: new members only")
        budget.step("choosing a method")
        found = candidates(members_old, members, parts.labels["train"], parts.labels["val"])
        guard_base = None
        if "guard" in parts.texts and base_clf is not None:
            guard_base = base_clf("guard", parts.texts["guard"])
        chosen, others = choose(found, parts.labels.get("guard"), guard_base)
        budget.step("comparing before and after")
        report = compare(parts, data, chosen, base_clf, encoder, ngram, opts, budget, notes)
        budget.step("writing the bundle")
        fields = manifest_fields(opts, base, data, parts, chosen, others, report, notes, started)
        names = {"base-encoder": encoder_bundle, "base-ngram": ngram_bundle}
        sources = {k: v for k, v in names.items() if v is not None}

        def build(tmp: Path) -> None:
            write_adapted(
                tmp, chosen, name=opts.name or out.name, labels=data.labels, sources=sources,
                extractor=encoder.extractor if encoder else None,
                max_length=base.manifest.max_length, manifest_fields=fields,
            )  # fmt: skip
            budget.step("checking the written bundle")
            check_parity(tmp, parts.texts["val"][:PARITY_ROWS],
                         chosen.probs("val")[:PARITY_ROWS], threads)  # fmt: skip

        atomic_dir(out, opts.overwrite, build)
    return Result(out, chosen, others, report, notes, time.perf_counter() - started)


def _source_name(target: str) -> str:
    """What the manifest says the data was: a file's name, or the store (no password)."""
    if is_store(target):
        from ..feedback import redact

        return f"corrections store {redact(target)}"
    return Path(target).name


def _no_replay_note(opts: AdaptOptions, labels: tuple[str, ...]) -> str:
    if not opts.data_dir:
        return "no --data-dir: adapted on your rows alone (no replay, no ChnSentiCorp check)"
    return f"labels {list(labels)} lack Negative/Positive: the review data is not replayed"


def compare(parts: Parts, data: Labelled, chosen: Candidate, base_clf: BaseScorer | None,
            encoder: Encoder | None, ngram: Classifier | None, opts: AdaptOptions,
            budget: Budget, notes: list[str]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Before/after scores on validation and, when given and in budget, ChnSentiCorp test."""
    val_labels = parts.labels["val"]
    before = scores(val_labels, base_clf("val", parts.texts["val"])) if base_clf else None
    report: dict[str, dict[str, Any]] = {
        "validation": {"base": before, "adapted": scores(val_labels, chosen.probs("val"))}
    }
    general = general_rows(opts, data.labels)
    if general and budget.left <= 0:
        notes.append("time budget spent: ChnSentiCorp check skipped")
    elif general:
        texts = [r.text for r in general]
        labels = np.array([r.label for r in general])
        probs = [member_scorer(m, encoder, ngram)("general", texts) for m in chosen.members]
        after = sharpen(mix(probs, np.array(chosen.weights)), chosen.temperature)
        report["chnsenticorp_test"] = {
            "base": scores(labels, base_clf("general", texts)) if base_clf else None,
            "adapted": scores(labels, after),
        }
    return report


def manifest_fields(opts: AdaptOptions, base: Bundle, data: Labelled, parts: Parts,
                    chosen: Candidate, others: list[Candidate], report: dict[str, Any],
                    notes: list[str], started: float) -> dict[str, Any]:  # fmt: skip
    """What the adapted bundle's manifest records: base, data, method, what else was tried,
    before/after metrics."""
    from ..bundle import DISPLAY_NAMES

    return {
        "display_labels": [DISPLAY_NAMES.get(label, label) for label in data.labels],
        "source": {
            "kind": "qinggan.adapt",
            "base": {"name": base.name, "spec": opts.base, "sha256": base.sha256()},
            "architecture": " + ".join(m.kind for m in chosen.members),
        },
        "metrics": {"adapt": report},
        "training": {
            "adapt": {
                "command": "qinggan adapt",
                "data": {
                    "file": _source_name(opts.data),
                    "sha256": data.sha256,
                    "rows": len(data.rows),
                    "per_label": data.counts(),
                    "train_rows": len(parts.texts["train"]),
                    "val_rows": len(parts.texts["val"]),
                    "dropped_conflicting_texts": data.conflicting,
                    "dropped_duplicate_rows": data.duplicates,
                },
                "replay_rows": len(parts.texts.get("replay", [])),
                "guard_rows": len(parts.texts.get("guard", [])),
                "seed": opts.seed,
                "val_fraction": opts.val_fraction,
                "chosen": chosen.summary(),
                "tried": [c.summary() for c in others],
                "notes": notes,
                "seconds_before_writing": round(time.perf_counter() - started, 1),
            }
        },
    }
