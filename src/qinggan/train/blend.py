"""Blend bundles into an ensemble bundle, with member weights and temperature chosen on dev.

``python -m qinggan.train.blend OUT DATA_DIR MEMBER [MEMBER ...]`` scores every
``*/dev.csv.gz`` text with each member bundle (once), tries every weighting on a grid
(``--step``, default 0.05), keeps the one with the best dev accuracy (ties: lower
log-loss), fits the ensemble temperature on the averaged log-probabilities and writes
``OUT/qinggan.json`` listing the members by path relative to ``OUT`` and checksum (a
member the sweep gives no weight is left out). The weights, the temperature and the
sweep are recorded in the manifest's ``training`` field. ``--gate I`` also makes it a
cascade: member ``I`` answers alone the texts it is at least as confident about as the
lowest threshold that keeps dev accuracy within ``--gate-max-drop`` (default 0) of the
whole ensemble's, overall and on every source (or, with ``--gate-max-share S``, the best dev
accuracy passing on at most a share S of texts: a speed budget); the others run only on the
rest. No torch needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, load_bundle, write_bundle
from ..engine import load
from ..ensemble import mix, sharpen
from ..errors import QingganError, run_main
from .calibration import fit_temperature, nll
from .data import read_split


@dataclass(frozen=True)
class Blend:
    weights: tuple[float, ...]
    temperature: float
    dev_accuracy: float
    dev_nll: float
    sweep: list[dict[str, Any]]


def weight_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Every weighting of ``members`` on a grid of ``step`` that sums to 1."""
    if members < 1 or not 0 < step <= 1:
        raise QingganError("need at least one member and 0 < step <= 1")
    units = round(1 / step)
    grid = []
    for head in itertools.product(range(units + 1), repeat=members - 1):
        rest = units - sum(head)
        if rest >= 0:
            grid.append(tuple(round(u / units, 6) for u in (*head, rest)))
    return grid


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, 1e-12, 1.0))


def choose_blend(member_probs: Sequence[np.ndarray], labels: np.ndarray, step: float) -> Blend:
    """The best dev weighting of ``member_probs`` (each ``[n, classes]``) and its temperature."""
    labels = np.asarray(labels)
    sweep: list[dict[str, Any]] = []
    for weights in weight_grid(len(member_probs), step):
        probs = mix(member_probs, np.array(weights))
        accuracy = float((probs.argmax(axis=1) == labels).mean())
        sweep.append(
            {
                "weights": list(weights),
                "accuracy": round(accuracy, 5),
                "nll": nll(_log(probs), labels),
            }
        )
    # best accuracy, then lowest log-loss, then the most even weights
    best = max(
        sweep, key=lambda row: (row["accuracy"], -round(row["nll"], 9), -max(row["weights"]))
    )
    weights = tuple(best["weights"])
    log_mix = _log(mix(member_probs, np.array(weights)))
    temperature = fit_temperature(log_mix, labels)
    for row in sweep:
        row["nll"] = round(row["nll"], 5)
    return Blend(
        weights=weights,
        temperature=round(temperature, 4),
        dev_accuracy=best["accuracy"],
        dev_nll=round(nll(log_mix, labels, temperature), 5),
        sweep=sweep,
    )


def choose_gate(
    member_probs: Sequence[np.ndarray],
    labels: np.ndarray,
    chosen: Blend,
    member: int,
    max_drop: float = 0.0,
    groups: np.ndarray | None = None,
    max_share: float | None = None,
) -> dict[str, Any]:
    """The confidence at or above which member ``member`` answers alone (a cascade).

    By default, the lowest one at which dev accuracy stays within ``max_drop`` of the whole
    ensemble's, overall and in every group (e.g. data source) of ``groups``. With
    ``max_share`` (a speed budget: the share of texts the other members may see), the one
    with the best dev accuracy among those passing on at most that share (ties: the lower).
    """
    labels = np.asarray(labels)
    groups = np.zeros(len(labels), dtype=int) if groups is None else np.asarray(groups)
    names = sorted(set(groups.tolist()))
    full = sharpen(mix(member_probs, np.array(chosen.weights)), chosen.temperature)
    full_right = full.argmax(axis=1) == labels
    floors = {g: float(full_right[groups == g].mean()) - max_drop for g in names}
    floor = float(full_right.mean()) - max_drop
    alone = member_probs[member]
    sweep = []
    for step in range(50, 100):
        confidence = step / 100
        sure = alone.max(axis=1) >= confidence
        right = np.where(sure[:, None], alone, full).argmax(axis=1) == labels
        holds = float(right.mean()) >= floor - 1e-9 and all(
            float(right[groups == g].mean()) >= floors[g] - 1e-9 for g in names
        )
        sweep.append({"confidence": confidence, "alone": round(float(sure.mean()), 4),
                      "accuracy": round(float(right.mean()), 5), "holds": holds})  # fmt: skip
    rule: dict[str, float]
    if max_share is not None:
        within = [row for row in sweep if 1 - row["alone"] <= max_share + 1e-9]
        best = max(within, key=lambda row: row["accuracy"], default=None)  # first max: lowest
        if best is None:
            raise QingganError(f"no threshold passes on at most {max_share:.0%} of dev texts")
        rule = {"max_share": max_share}
    else:
        best = next((row for row in sweep if row["holds"]), None)
        if best is None:  # 0.99 still loses somewhere: the gate member answers only when certain
            best = {"confidence": 1.0, "alone": 0.0, "accuracy": round(float(full_right.mean()), 5)}
        rule = {"max_drop": max_drop}
    return {"member": member, "confidence": best["confidence"], **rule,
            "answered_alone_on_dev": best["alone"], "dev_accuracy": best["accuracy"],
            "sweep": sweep}  # fmt: skip


def blend(
    out_dir: Path,
    data_dir: Path,
    members: Sequence[Path],
    *,
    name: str,
    step: float = 0.05,
    threads: int | None = None,
    gate: int | None = None,
    gate_max_drop: float = 0.0,
    gate_max_share: float | None = None,
) -> Blend:
    """Score dev with each member, choose the blend and write the ensemble bundle."""
    bundles: list[Bundle] = [load_bundle(m) for m in members]
    labels_seen = {b.manifest.labels for b in bundles}
    if len(labels_seen) != 1:
        raise QingganError(f"members disagree on labels: {sorted(labels_seen)}")
    labels = list(bundles[0].manifest.labels)
    dev = read_split(data_dir, "dev")
    texts = [e.text for e in dev]
    y = np.array([e.label for e in dev])
    member_probs = []
    for bundle in bundles:
        clf = load(bundle.path, threads=threads)
        predictions = clf.predict(texts)
        member_probs.append(np.array([[p.scores[label] for label in labels] for p in predictions]))
    chosen = choose_blend(member_probs, y, step)
    kept = [(b, w) for b, w in zip(bundles, chosen.weights, strict=True) if w > 0]
    gated: dict[str, Any] = {}
    if gate is not None:
        if not 0 <= gate < len(bundles) or chosen.weights[gate] == 0:
            raise QingganError(f"--gate {gate}: no such member with a weight")
        groups = np.array([e.source for e in dev])
        gated = choose_gate(member_probs, y, chosen, gate, gate_max_drop, groups, gate_max_share)
        gated["member"] = [b for b, _ in kept].index(bundles[gate])  # index among kept
    out_dir.mkdir(parents=True, exist_ok=True)
    write_bundle(
        out_dir,
        name=name,
        labels=labels,
        models={},
        max_length=min(b.manifest.max_length for b in bundles),  # what every member reads whole
        members=[  # a member the sweep gave no weight is left out
            {"path": Path(os.path.relpath(b.path, out_dir)).as_posix(), "weight": w}
            for b, w in kept
        ],
        temperature=chosen.temperature,
        gate={"member": gated["member"], "confidence": gated["confidence"]} if gated else {},
        training={
            "blend": {
                "command": "python -m qinggan.train.blend",
                "dev_texts": len(texts),
                "step": step,
                "members": [b.name for b in bundles],
                "weights": list(chosen.weights),
                "temperature": chosen.temperature,
                "dev_accuracy": chosen.dev_accuracy,
                "dev_nll_calibrated": chosen.dev_nll,
                "sweep": chosen.sweep,
                **({"gate": gated} if gated else {}),
            }
        },
    )
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("members", type=Path, nargs="+")
    parser.add_argument("--name", default="qinggan-ensemble")
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--gate", type=int, help="index of a member that answers alone when it is sure (cascade)"
    )
    parser.add_argument(
        "--gate-max-drop", type=float, default=0.0, help="dev accuracy the cascade may lose"
    )
    parser.add_argument(
        "--gate-max-share",
        type=float,
        help="instead of --gate-max-drop: the best dev accuracy passing on at most this share "
        "of texts to the other members (a speed budget)",
    )
    args = parser.parse_args()
    chosen = blend(
        args.out, args.data_dir, args.members, name=args.name, step=args.step,
        threads=args.threads, gate=args.gate, gate_max_drop=args.gate_max_drop,
        gate_max_share=args.gate_max_share,
    )  # fmt: skip
    summary = {k: v for k, v in chosen.__dict__.items() if k != "sweep"}
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    run_main(main)
