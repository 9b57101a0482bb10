"""Score a Parquet/CSV/JSON Lines dataset on a Ray cluster with qinggan (a Ray job entrypoint).

    python score_job.py --input s3://bucket/reviews/ --output s3://bucket/scored/ \
        --text-column text --model accurate --concurrency 16

Reads with Ray Data (in parallel, from storage every node can reach), adds the prediction
columns with an actor pool (one model per actor, 1 ONNX Runtime thread each) and writes
Parquet files to --output. Runs unchanged on a laptop (`ray.init()` starts a local
instance) and on a cluster (`ray job submit`, a KubeRay RayJob), where the address comes
from RAY_ADDRESS.
"""

from __future__ import annotations

import argparse

import ray
import ray.data

from qinggan.scale import score_dataset


def read(path: str, fmt: str) -> ray.data.Dataset:
    readers = {
        "parquet": ray.data.read_parquet,
        "csv": ray.data.read_csv,
        "jsonl": ray.data.read_json,
    }
    return readers[fmt](path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--model", default=None, help="built-in name or a bundle path on every node"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="actors (default: cluster CPUs)"
    )
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    ray.init()
    ds = read(args.input, args.format)
    scored = score_dataset(
        ds, args.model, args.text_column, concurrency=args.concurrency, batch_size=args.batch_size
    )
    scored.write_parquet(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
