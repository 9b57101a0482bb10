"""Average the weights of training runs from one trajectory (a "model soup") into a bundle.

    python -m qinggan.train.soup OUT DATA_DIR RUN RUN [RUN ...]

Each RUN is a bundle written by ``qinggan train`` with its best weights beside it
(``RUN.pt``), e.g. successive stages continued from one another with ``--init``. All must
share the encoder shape and the tokenizer. The average is exported as the runs are
(ONNX fp32 + int8, with the first run's ``int8_keep_fp32`` unless ``--keep-fp32`` says
otherwise), its temperature is fitted on the first run's dev subset, and the first run's
manifest is the template for the rest (labels, max length, text prefix, source).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..bundle import Bundle, Manifest, load_bundle, rewrite_manifest
from ..errors import QingganError, run_main
from .export import default_variant, export_checked
from .model import EncoderConfig, SentimentModel, load_saved, weights_file
from .requantize import dev_batches

# what describes one training run rather than the soup (kept per run under "soup")
RUN_FIELDS = (
    "steps",
    "planned_steps",
    "best_step",
    "best_dev_accuracy",
    "stop_reason",
    "history",
    "time_seconds",
)


def run_summary(run: Path, manifest: Manifest) -> dict[str, Any]:
    """Where ``run`` started from and how its training went (for the soup's manifest)."""
    training = manifest.training
    return {
        "run": run.name,
        "init": training.get("config", {}).get("init"),
        **{k: training.get(k) for k in RUN_FIELDS if k != "history"},
    }


def average_weights(paths: list[Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The encoder config shared by the weight files at ``paths`` and their mean state."""
    if len(paths) < 2:
        raise QingganError("a soup needs at least two runs")
    encoder: dict[str, Any] | None = None
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        saved = load_saved(path)
        state = saved["state_dict"]
        if encoder is None:
            encoder = saved.get("encoder")
            total = {k: v.double() for k, v in state.items()}
            continue
        if saved.get("encoder") != encoder or state.keys() != total.keys():
            raise QingganError(f"{path}: its encoder differs from {paths[0]}'s; cannot average")
        for k, v in state.items():
            total[k] += v.double()
    assert encoder is not None
    return encoder, {k: (v / len(paths)).to(state[k].dtype) for k, v in total.items()}


def soup(
    out_dir: Path,
    data_dir: Path,
    runs: list[Path],
    *,
    keep_fp32: list[str] | None = None,
    name: str | None = None,
    threads: int = 2,
) -> Bundle:
    """Write the bundle of ``runs``' averaged weights to ``out_dir`` (see the module doc)."""
    # only the manifests and tokenizer are read from the runs (the weights are RUN.pt)
    manifests = [load_bundle(run, verify=False).manifest for run in runs]
    template = manifests[0]
    for run, other in zip(runs[1:], manifests[1:], strict=True):
        if other.files.get(other.tokenizer) != template.files.get(template.tokenizer):
            raise QingganError(f"{run}: its tokenizer differs from {runs[0]}'s; cannot average")
    encoder, state = average_weights([weights_file(run) for run in runs])
    model = SentimentModel(EncoderConfig(**encoder))
    model.load_state_dict(state)
    config = template.training.get("config", {})
    if keep_fp32 is None:
        keep_fp32 = list(config.get("int8_keep_fp32", []))

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runs[0] / template.tokenizer, out_dir / template.tokenizer)
    batches, labels = dev_batches(runs[0], data_dir)
    temperature, parity = export_checked(
        model, out_dir, batches, labels, keep_fp32=keep_fp32, threads=threads
    )
    shared = {k: v for k, v in template.training.items() if k not in RUN_FIELDS}
    training = {
        **shared,
        "config": {**config, "int8_keep_fp32": keep_fp32},
        "soup": {
            "script": "python -m qinggan.train.soup OUT DATA_DIR " + " ".join(r.name for r in runs),
            "runs": [run_summary(run, m) for run, m in zip(runs, manifests, strict=True)],
        },
    }
    return rewrite_manifest(
        runs[0],
        out_dir=out_dir,
        name=name or template.name,
        models={"fp32": "model.onnx", "int8": "model.int8.onnx"},
        default_variant=default_variant(parity),
        temperature=round(temperature, 4),
        parity=parity,
        training=training,
        metrics={},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    parser.add_argument(
        "--keep-fp32", action="append", metavar="PATTERN", help="default: the first run's"
    )
    parser.add_argument("--name", help="the bundle's name (default: the first run's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    bundle = soup(
        args.out_dir,
        args.data_dir,
        args.runs,
        keep_fp32=args.keep_fp32,
        name=args.name,
        threads=args.threads,
    )
    print(json.dumps(bundle.manifest.parity, indent=2))


if __name__ == "__main__":
    run_main(main)
