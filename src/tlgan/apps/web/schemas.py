"""Request bodies of the web API: strict types and ranges, so bad input is refused, never clamped."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tlgan.editing.editor import MAX_KNOB, Edit
from tlgan.sampling.latents import MAX_SEED

MAX_EDITS = 500        # a long session collapses slider drags into one edit each; 500 replay in ~30 ms
MAX_NAME = 200
MAX_LOCKS = 256
MAX_BODY_BYTES = 128 * 1024
MAX_SIZE = 1024


class EditIn(BaseModel):
    """One knob move, as ``tlgan.editor.Edit``: 'set' to ``value`` σ or 'step' by ``value`` σ, under ``locks``."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["set", "step"]
    knob: str = Field(min_length=1, max_length=MAX_NAME)
    value: float = Field(ge=-MAX_KNOB, le=MAX_KNOB, allow_inf_nan=False, strict=True)
    locks: list[str] = Field(default_factory=list, max_length=MAX_LOCKS)
    exact: bool = Field(False, strict=True, description="exact mode: value is the knob's standardised reading")

    def to_edit(self) -> Edit:
        return Edit(self.op, self.knob, float(self.value), tuple(sorted(set(self.locks))), self.exact)


class StateIn(BaseModel):
    """A face: its seed, the edits made to it (replayed in order) and the knobs locked now."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True, description="the starting face")
    edits: list[EditIn] = Field(default_factory=list, max_length=MAX_EDITS)
    locks: list[str] = Field(default_factory=list, max_length=MAX_LOCKS, description="knobs locked now")
    exact: bool = Field(False, strict=True, description="the mode shown: knob values as exact readings (new edits "
                                                         "carry their own mode)")

    def edit_list(self) -> list[Edit]:
        return [e.to_edit() for e in self.edits]


class RenderIn(StateIn):
    format: Literal["png", "webp"] = "png"
    size: int = Field(512, ge=16, le=MAX_SIZE, strict=True, description="output size in px (bicubic scaling)")


class StripIn(StateIn):
    knob: str = Field(min_length=1, max_length=MAX_NAME, description="the knob to sweep")
    span: float = Field(3.0, gt=0, le=MAX_KNOB, allow_inf_nan=False, strict=True, description="sweep −span…+span σ")
    steps: int = Field(7, ge=2, le=15, strict=True)
    size: int = Field(128, ge=16, le=512, strict=True, description="size of each tile in px")
