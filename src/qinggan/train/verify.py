"""Check our reader against the package's own C engine.

The wheel's compiled extension targets CPython 3.12, so for the check only we compile
its ``e5.c`` with gcc into a throw-away shared library (with a two-line shim exposing
the static tokenizer) and compare, on a handful of Chinese sentences: token ids
(HF ``tokenizers`` vs the engine) and mean-pooled, L2-normalised embeddings (torch,
fp32 dequantised weights vs the engine's int8-activation x int4 kernels).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import QingganError, run_main

SHIM = r"""
#include "e5.c"
int qg_content_ids(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""

CHECK_SENTENCES = [
    "这家酒店服务很好，下次还来",
    "房间太小了，隔音很差，再也不会住了。",
    "物流很快，包装完好，手机用着挺流畅的～",
    "外卖送得太慢，菜都凉了！！！",
    "书的内容一般般，价格偏贵，不推荐购买",
    "总体来说性价比很高，值得推荐 ^_^",
    "屏幕分辨率 1920x1080，电池续航 8 小时左右。",
    "客服态度恶劣，说好的七天无理由退货也不给退",
]


@dataclass
class EngineCheck:
    sentences: int
    token_ids_identical: int
    min_cosine: float
    mean_cosine: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "sentences": self.sentences,
            "token_ids_identical": self.token_ids_identical,
            "min_cosine": round(self.min_cosine, 6),
            "mean_cosine": round(self.mean_cosine, 6),
        }


class CEngine:
    """ctypes wrapper over a freshly compiled ``e5.c``."""

    def __init__(self, e5_file: Path, workdir: Path) -> None:
        src_dir = e5_file.parent
        if shutil.which("gcc") is None:
            raise QingganError("the engine check needs gcc")
        shutil.copy(src_dir / "e5.c", workdir / "e5.c")
        shutil.copy(src_dir / "e5.h", workdir / "e5.h")
        (workdir / "shim.c").write_text(SHIM)
        lib_path = workdir / "libe5check.so"
        subprocess.run(
            ["gcc", "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC",
             "-o", str(lib_path), str(workdir / "shim.c"), "-lm"],
            check=True, cwd=workdir, capture_output=True,
        )  # fmt: skip
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_embed.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.qg_content_ids.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.model = lib.e5_load(str(e5_file).encode())
        if not self.model:
            raise QingganError(f"the C engine could not load {e5_file}")

    def token_ids(self, text: str, bos: int = 0, eos: int = 2) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        out = (ctypes.c_int * cap)()
        n = self.lib.qg_content_ids(self.model, raw, out, cap)
        return [bos, *out[:n], eos]

    def embed_query(self, text: str, dim: int = 384) -> np.ndarray:
        out = (ctypes.c_float * dim)()
        self.lib.e5_embed(self.model, text.encode("utf-8"), 1, out)
        return np.array(out[:], dtype=np.float32)

    def close(self) -> None:
        if self.model:
            self.lib.e5_free(self.model)
            self.model = None


def check_against_engine(
    e5_file: Path,
    tokenizer,
    encoder,
    sentences: list[str] | None = None,  # type: ignore[no-untyped-def]
) -> EngineCheck:
    """Compare ``tokenizer`` (full vocabulary) and ``encoder`` (all 12 layers) with the engine."""
    import torch

    from .model import mean_pool

    sentences = sentences or CHECK_SENTENCES
    with tempfile.TemporaryDirectory(prefix="qinggan-e5check-") as tmp:
        engine = CEngine(e5_file, Path(tmp))
        try:
            identical, cosines = 0, []
            encoder.eval()
            for text in sentences:
                ours = tokenizer.encode("query: " + text).ids
                theirs = engine.token_ids("query: " + text)
                identical += ours == theirs
                ids = torch.tensor([ours])
                with torch.no_grad():
                    hidden = encoder(ids, torch.ones_like(ids))
                    vec = mean_pool(hidden, torch.ones_like(ids))[0].numpy()
                ref = engine.embed_query(text, vec.shape[0])
                cosines.append(float(vec @ ref / np.linalg.norm(vec) / np.linalg.norm(ref)))
        finally:
            engine.close()
    return EngineCheck(len(sentences), identical, min(cosines), float(np.mean(cosines)))


def token_agreement(e5_file: Path, tokenizer, texts: list[str]) -> tuple[int, int, list[str]]:  # type: ignore[no-untyped-def]
    """How many of ``texts`` (with the query prefix) get identical ids; and a few that differ."""
    with tempfile.TemporaryDirectory(prefix="qinggan-e5check-") as tmp:
        engine = CEngine(e5_file, Path(tmp))
        try:
            same, differ = 0, list[str]()
            for text in texts:
                if tokenizer.encode("query: " + text).ids == engine.token_ids("query: " + text):
                    same += 1
                elif len(differ) < 5:
                    differ.append(text)
        finally:
            engine.close()
    return same, len(texts), differ


def main() -> None:
    """``python -m qinggan.train.verify [DATA_DIR] [--json F]``: run both checks, print JSON."""
    import argparse
    import json

    import torch

    from .data import read_split, sample
    from .e5 import locate_e5_file, read_e5
    from .model import Encoder, encoder_config_for, load_e5_weights
    from .vocab import build_tokenizer, full_vocab

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_dir", nargs="?")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    e5_file = locate_e5_file()
    image = read_e5(e5_file)
    tokenizer = build_tokenizer(full_vocab(image), image.norm_map)
    encoder = Encoder(encoder_config_for(image, image.config.vocab_rows, image.config.layers))
    load_e5_weights(encoder, image)
    result: dict[str, object] = {
        "embedding_check": check_against_engine(e5_file, tokenizer, encoder).to_dict()
    }
    if args.data_dir:
        texts = [e.text for e in sample(read_split(args.data_dir, "test"), args.texts, 0)]
        same, total, differ = token_agreement(e5_file, tokenizer, texts)
        result["token_check"] = {"texts": total, "identical": same, "examples_differing": differ}
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_main(main)
