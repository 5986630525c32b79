"""Training an attribute CNN on a CelebA-format folder, resumably, with a per-attribute accuracy table.

Every source of randomness is derived from (seed, epoch): weight
initialisation, batch order and horizontal flips. The learning rate is a
function of the global step (linear warm-up, then cosine decay to zero). So a
run interrupted and resumed from its checkpoint ends with the same weights as
an uninterrupted one. Loss: binary cross-entropy on the +-1 labels read as 1/0;
the saved extractor outputs probabilities.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlgan.devices import resolve_device
from tlgan.errors import TlganError
from tlgan.models.extractors.base import Feature
from tlgan.models.extractors.nets import ARCHS, build_net, load_backbone
from tlgan.models.extractors.trained import save_extractor_file

from .celeba import read_celeba
from .checkpoint import Position, load_checkpoint, save_checkpoint
from .data import ImageSet, cache_images, to_model_input


@dataclass
class TrainConfig:
    """Settings of a training run; all of them must match to resume from a checkpoint.

    arch 'small' uses width/depth; arch 'mobilenet' uses alpha/hidden.
    backbone: optional weight file for the backbone (see tlgan.training.nets.load_backbone).
    """

    arch: str = "small"
    width: int = 32
    depth: int = 4
    alpha: float = 1.0
    hidden: int = 256
    input_size: int = 128
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    flip: bool = True
    backbone: str | None = None
    freeze_backbone: bool = False

    def network(self) -> dict[str, Any]:
        if self.arch == "small":
            return {"arch": "small", "width": self.width, "depth": self.depth}
        return {"arch": "mobilenet", "alpha": self.alpha, "hidden": self.hidden}

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise TlganError(f"unknown architecture {self.arch!r}; use one of {', '.join(ARCHS)}")
        for name in ("width", "depth", "hidden", "input_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TlganError(f"{name} must be at least 1")
        if self.input_size < 8:
            raise TlganError("input size must be at least 8 pixels")
        if not self.lr > 0:
            raise TlganError("learning rate must be positive")
        if self.freeze_backbone and not self.backbone:
            raise TlganError("--freeze-backbone needs --backbone FILE")


@dataclass
class AccuracyRow:
    name: str
    val: float
    test: float
    positive_rate: float

    @property
    def baseline(self) -> float:
        """Test accuracy of always answering the majority label."""
        return max(self.positive_rate, 1 - self.positive_rate)


@dataclass
class AccuracyTable:
    """Per-attribute accuracy (threshold 0.5) on the validation and test splits."""

    rows: list[AccuracyRow]

    def mean(self, split: str) -> float:
        return float(np.mean([getattr(r, split) for r in self.rows]))

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {r.name: {"val": r.val, "test": r.test, "test_positive_rate": r.positive_rate} for r in self.rows}

    def format(self) -> str:
        width = max(9, *(len(r.name) for r in self.rows))
        lines = [f"{'attribute':<{width}}  {'val acc':>7}  {'test acc':>8}  {'majority':>8}"]
        lines += [f"{r.name:<{width}}  {r.val:7.3f}  {r.test:8.3f}  {r.baseline:8.3f}" for r in self.rows]
        baseline = float(np.mean([r.baseline for r in self.rows]))
        lines.append(f"{'mean':<{width}}  {self.mean('val'):7.3f}  {self.mean('test'):8.3f}  {baseline:8.3f}")
        return "\n".join(lines)


@dataclass
class TrainResult:
    """What a call to train_extractor did. finished is False when it stopped at max_steps (checkpoint kept)."""

    path: Path
    finished: bool
    step: int
    seconds: float
    table: AccuracyTable | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class _Split:
    """One split's images, cached in memory as uint8 when small enough, else decoded on the fly."""

    def __init__(self, dataset: ImageSet, cache: bool, workers: int, progress: bool) -> None:
        self.dataset, self.workers = dataset, workers
        self.targets = dataset.targets
        self.images = cache_images(dataset, workers, progress) if cache else None

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, order: torch.Tensor, batch_size: int):
        """Yield (positions in ``order``, uint8 images, targets) batch by batch, in ``order``."""
        if self.images is not None:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                yield start, self.images[idx], self.targets[idx]
        else:
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, sampler=order.tolist(),
                                                 num_workers=self.workers)
            for i, (images, targets) in enumerate(loader):
                yield i * batch_size, images, targets


def _lr_at(step: int, total: int, base: float) -> float:
    warmup = max(1, min(200, total // 20))
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _epoch_order(seed: int, epoch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen), torch.rand(n, generator=gen) < 0.5


@torch.no_grad()
def predict(net: nn.Module, split: _Split, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Probabilities (N, K) for a split, in its order."""
    net.eval()
    out = []
    for _, images, _ in split.batches(torch.arange(len(split)), batch_size):
        out.append(torch.sigmoid(net(to_model_input(images).to(device))).cpu())
    return torch.cat(out)


def accuracy(probabilities: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per-column accuracy of thresholding at 0.5 against 0/1 targets."""
    return ((probabilities > 0.5) == (targets > 0.5)).float().mean(0).numpy()


def _set_train_mode(net: nn.Module, freeze_backbone: bool) -> None:
    net.train()
    if freeze_backbone:
        net.backbone.eval()  # frozen batch norms keep their statistics


def train_extractor(celeba: str | Path, out: str | Path, config: TrainConfig | None = None,
                    device: str | torch.device | None = "auto", workers: int = 0, progress: bool = True,
                    restart: bool = False, max_steps: int | None = None, checkpoint_every: int = 1000,
                    cache_limit_bytes: int = 4 << 30, log: Callable[[str], None] = print) -> TrainResult:
    """Train a CNN on the CelebA-format folder ``celeba`` and save it as a tlgan extractor file ``out``.

    Checkpoints go to ``OUT.ckpt/`` every ``checkpoint_every`` steps and at each
    epoch's end; a later call with the same settings resumes from there
    (``restart`` discards it). ``max_steps`` stops this call after that many
    steps (checkpoint written, finished False). Returns the accuracy table when finished.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    config.validate()
    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise TlganError(f"the extractor file must end in .safetensors, got {out.name}")
    device = resolve_device(device)
    index = read_celeba(celeba)
    names = index.names
    rows = {s: index.split(s) for s in ("train", "val", "test")}
    size = config.input_size
    fits = sum(len(r) for r in rows.values()) * 3 * size * size <= cache_limit_bytes
    log(f"{len(index.files)} images, {len(names)} attributes; train {len(rows['train'])}, val {len(rows['val'])}, "
        f"test {len(rows['test'])}; input {size}x{size}; " + ("decoding into memory" if fits else "decoding on the fly"))
    splits = {s: _Split(ImageSet(index, r, size), fits, workers, progress) for s, r in rows.items()}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = build_net(config.network(), len(names))
    if config.backbone:
        loaded = load_backbone(net, config.backbone)
        log(f"backbone initialised from {config.backbone} ({loaded} tensors)")
    if config.freeze_backbone:
        net.backbone.requires_grad_(False)
    net.to(device)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    settings = {**asdict(config), "data": str(Path(celeba).expanduser().resolve()), "count": len(index.files)}
    folder = out.with_name(out.name + ".ckpt")
    if restart and folder.exists():
        shutil.rmtree(folder)
    position = load_checkpoint(folder, net, optimizer, settings, names) or Position()
    if position.step:
        log(f"resuming from {folder} at epoch {position.epoch + 1}, step {position.step}")

    train = splits["train"]
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    session_steps = 0
    from tqdm import tqdm

    while position.epoch < config.epochs:
        order, flips = _epoch_order(config.seed, position.epoch, len(train))
        start = position.batch * config.batch_size
        _set_train_mode(net, config.freeze_backbone)
        bar = tqdm(total=steps_per_epoch, initial=position.batch, desc=f"epoch {position.epoch + 1}/{config.epochs}",
                   unit="step", disable=not progress, leave=False)
        running = []
        for offset, images, targets in train.batches(order[start:], config.batch_size):
            x = to_model_input(images).to(device)
            flip = flips[order[start + offset: start + offset + len(images)]] if config.flip else None
            if flip is not None and bool(flip.any()):
                x[flip.to(device)] = x[flip.to(device)].flip(-1)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(position.step, total, config.lr)
            loss = F.binary_cross_entropy_with_logits(net(x), targets.to(device))
            if not torch.isfinite(loss):
                raise TlganError(f"training diverged at step {position.step} (loss {float(loss)}); try a smaller --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            position.step += 1
            position.batch += 1
            session_steps += 1
            running.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.4f}")
            if position.batch < steps_per_epoch and (position.step % checkpoint_every == 0
                                                     or (max_steps is not None and session_steps >= max_steps)):
                save_checkpoint(folder, net, optimizer, position, settings, names)
                if max_steps is not None and session_steps >= max_steps:
                    bar.close()
                    log(f"stopped after {session_steps} steps; checkpoint in {folder}")
                    return TrainResult(out, False, position.step, time.perf_counter() - started, None, position.history)
        bar.close()
        val_acc = float(accuracy(predict(net, splits["val"], device), splits["val"].targets).mean())
        position.history.append({"epoch": position.epoch + 1, "train_loss": float(np.mean(running)) if running else None,
                                 "val_accuracy": val_acc})
        log(f"epoch {position.epoch + 1}/{config.epochs}: train loss {position.history[-1]['train_loss']:.4f}, "
            f"mean val accuracy {val_acc:.3f}")
        position.epoch += 1
        position.batch = 0
        save_checkpoint(folder, net, optimizer, position, settings, names)
        if max_steps is not None and session_steps >= max_steps and position.epoch < config.epochs:
            log(f"stopped after {session_steps} steps; checkpoint in {folder}")
            return TrainResult(out, False, position.step, time.perf_counter() - started, None, position.history)

    val = accuracy(predict(net, splits["val"], device), splits["val"].targets)
    test = accuracy(predict(net, splits["test"], device), splits["test"].targets)
    positive = splits["test"].targets.mean(0).numpy()
    table = AccuracyTable([AccuracyRow(n, float(v), float(t), float(p)) for n, v, t, p in zip(names, val, test, positive)])
    features = [Feature(n, "probability", "other", f"P({n}) from a CNN trained on {index.root.name}") for n in names]
    training = {"data": settings["data"], "images": len(index.files), "settings": asdict(config),
                "steps": position.step, "history": position.history, "accuracy": table.as_dict(),
                "crop": "ingested" if index.manifest.get("cropped") else "original TL-GAN crop (128 at 89,121) for "
                        "178x218 images, else central square"}
    save_extractor_file(out, net.cpu(), config.network(), size, features, training)
    shutil.rmtree(folder, ignore_errors=True)
    return TrainResult(out, True, position.step, time.perf_counter() - started, table, position.history)
