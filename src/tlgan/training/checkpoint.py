"""Resumable training checkpoints: safetensors for tensors, JSON for the rest, both written atomically.

A checkpoint folder holds ``step_XXXXXXXX.safetensors`` (model tensors under
``model.``, optimizer tensors under ``opt.<param index>.<name>``) and
``state.json`` (format, settings, attribute names, position in training,
history, optimizer hyper-parameters and which tensor file is current). The
tensor file is written first and ``state.json`` last, so a crash at any
moment leaves the previous consistent checkpoint in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlgan.atomic import atomic_path, make_folder, write_text_atomic
from tlgan.errors import TlganError

FORMAT = "tlgan.train-checkpoint"
VERSION = 1


@dataclass
class Position:
    """Where training stands: epoch (0-based), next batch within it, global step, per-epoch history."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, position: Position,
                    settings: dict[str, Any], names: list[str]) -> None:
    """Write a checkpoint into ``folder`` (created if needed) and drop the tensors of older ones."""
    from safetensors.torch import save_file

    make_folder(folder)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"opt.{index}.{key}"] = value.detach().to("cpu").contiguous()
    weights = f"step_{position.step:08d}.safetensors"
    with atomic_path(folder / weights) as tmp:
        save_file(tensors, str(tmp))
    state = {"format": FORMAT, "version": VERSION, "settings": settings, "names": names, "epoch": position.epoch,
             "batch": position.batch, "step": position.step, "history": position.history,
             "param_groups": optimizer_state["param_groups"], "weights": weights}
    write_text_atomic(folder / "state.json", json.dumps(state, indent=1))
    for old in folder.glob("step_*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, settings: dict[str, Any],
                    names: list[str]) -> Position | None:
    """Restore model and optimizer from ``folder``; None if there is no checkpoint.

    Refuses (TlganError) a checkpoint made with other settings or other attributes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state_file = folder / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError:
        raise TlganError(f"{state_file} is not valid JSON; delete {folder} to start over") from None
    if state.get("format") != FORMAT:
        raise TlganError(f"{folder} is not a tlgan training checkpoint; move it away")
    changed = sorted(k for k in set(settings) | set(state["settings"]) if settings.get(k) != state["settings"].get(k))
    if changed:
        detail = ", ".join(f"{k}: {state['settings'].get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise TlganError(f"the checkpoint in {folder} was made with other settings ({detail}); "
                         "use the same settings to resume, or --restart to start over")
    if state["names"] != names:
        raise TlganError(f"the checkpoint in {folder} was trained on other attributes; use --restart to start over")
    try:
        tensors = load_file(str(folder / state["weights"]))
    except (SafetensorError, OSError) as exc:
        raise TlganError(f"cannot read checkpoint tensors in {folder}: {exc}; use --restart to start over") from None
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    return Position(state["epoch"], state["batch"], state["step"], list(state.get("history", [])))
