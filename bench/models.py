"""The benchmark's models, generated at bench time (never stored in the repo).

A StructBERT-base-shaped classifier with random weights (12 layers, hidden 768, 12 heads,
intermediate 3072, vocab 21128, 2 labels) in Hugging Face layout for the original stack,
and the same weights as a qinggan bundle with fp32 and int8 ONNX graphs.

Both come from ``qinggan.convert`` (``make_random_checkpoint`` then ``convert_checkpoint``
with int8), so the bundle is exactly what ``qinggan convert SRC OUT --int8`` makes. Results
are cached under ``bench/.cache/models/<shape>/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "models"


@dataclass(frozen=True)
class Shape:
    num_layers: int = 12
    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    vocab: int = 21128
    max_length: int = 512

    @property
    def key(self) -> str:
        return f"L{self.num_layers}-H{self.hidden}-A{self.heads}-I{self.intermediate}-V{self.vocab}"


BASE = Shape()
SMALL = Shape(num_layers=2, hidden=128, heads=2, intermediate=512)


@dataclass(frozen=True)
class Prepared:
    """Paths of the generated checkpoint (HF layout) and the qinggan bundle made from it."""

    shape: Shape
    hf_dir: Path
    bundle_dir: Path
    converter: str
    parity: dict


def prepare(shape: Shape = BASE, cache: Path = CACHE, *, force: bool = False) -> Prepared:
    """Generate (or reuse) the random checkpoint and its fp32+int8 bundle."""
    root = cache / shape.key
    hf_dir, bundle_dir, stamp = root / "hf", root / "bundle", root / "prepared.json"
    if stamp.is_file() and not force:
        info = json.loads(stamp.read_text())
        return Prepared(shape, hf_dir, bundle_dir, info["converter"], info.get("parity", {}))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    from qinggan.convert import convert_checkpoint, make_random_checkpoint

    make_random_checkpoint(
        hf_dir,
        layout="hf",
        num_layers=shape.num_layers,
        hidden=shape.hidden,
        heads=shape.heads,
        intermediate=shape.intermediate,
        vocab=shape.vocab,
        max_positions=shape.max_length,
    )
    # Random weights: keep int8 even if its agreement gate would refuse it; the benchmark
    # reports the agreement next to every int8 figure instead.
    conversion = convert_checkpoint(hf_dir, bundle_dir, int8=True, force_int8=True)
    parity = conversion.report.to_dict()
    converter = "qinggan.convert (make_random_checkpoint + convert_checkpoint --int8)"
    info = {"shape": asdict(shape), "converter": converter, "parity": parity}
    stamp.write_text(json.dumps(info, indent=2))
    return Prepared(shape, hf_dir, bundle_dir, converter, parity)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a 2-layer model, for debugging")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args()
    print(prepare(SMALL if args.small else BASE, force=args.force))
