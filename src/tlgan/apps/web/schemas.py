"""Request bodies of the web API: strict types and ranges, so bad input is refused, never clamped."""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal, Sequence

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from tlgan.editing.editor import MAX_KNOB, Edit
from tlgan.editing.identity import IDENTITY
from tlgan.sampling.latents import MAX_SEED

MAX_EDITS = 500        # a long session collapses slider drags into one edit each; 500 replay in ~30 ms
MAX_NAME = 200
MAX_LOCKS = 256
MAX_BODY_BYTES = 128 * 1024
MAX_SIZE = 1024
LOCKS_DOC = (f"knob names, and '{IDENTITY}' (keep the person, unless a knob has that name): exact edits hold the "
             "face's identity (dlib descriptor distance from the start face within the tolerance), linear edits "
             "only measure it (/api/readings)")
MAX_EDIT_LOCKS = 3000  # Σ over edits of the locks each was made under: replaying one pair costs ~60 µs


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


class MixIn(BaseModel):
    """Start from a blend of the face ``seed`` and another face: ``t`` of the way along the arc between them."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True, description="the other face")
    t: float = Field(ge=0, le=1, allow_inf_nan=False, strict=True, description="0: this face, 1: the other")


class StateIn(BaseModel):
    """A face: its seed (optionally blended with another), the edits made to it (replayed in order) and the
    knobs locked now."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True, description="the starting face")
    mix: MixIn | None = Field(None, description="blend the starting face with another before the edits")
    edits: list[EditIn] = Field(default_factory=list, max_length=MAX_EDITS)
    locks: list[str] = Field(default_factory=list, max_length=MAX_LOCKS, description="knobs locked now")
    exact: bool = Field(False, strict=True, description="the mode shown: knob values as exact readings (new edits "
                                                         "carry their own mode)")

    @model_validator(mode="after")
    def _bounded_work(self) -> "StateIn":
        pairs = sum(len(set(e.locks)) for e in self.edits)
        if pairs > MAX_EDIT_LOCKS:
            raise PydanticCustomError(
                "too_much_work", "the edits carry {pairs} locks in all (edits × locks); the limit is {limit}: "
                "start again from fewer edits (Reset) or lock fewer knobs", {"pairs": pairs, "limit": MAX_EDIT_LOCKS})
        return self

    def edit_list(self) -> list[Edit]:
        return [e.to_edit() for e in self.edits]

    def start(self) -> tuple[int, float] | None:
        """The blend as (other seed, t), or None."""
        return None if self.mix is None else (self.mix.seed, float(self.mix.t))


class RenderIn(StateIn):
    format: Literal["png", "webp"] = "png"
    size: int = Field(512, ge=16, le=MAX_SIZE, strict=True, description="output size in px (bicubic scaling)")
    meta: bool = Field(False, description="PNG only: store the state (seed, edits, locks) in the file, as JSON "
                                          "in an iTXt chunk named 'tlgan'")


class SweepIn(StateIn):
    knob: str = Field(min_length=1, max_length=MAX_NAME, description="the knob to sweep")
    span: float = Field(3.0, gt=0, le=MAX_KNOB, allow_inf_nan=False, strict=True, description="sweep −span…+span σ")
    frames: int = Field(24, ge=4, le=60, strict=True, description="pictures from −span to +span (played there and back)")
    size: int = Field(256, ge=16, le=512, strict=True, description="size in px")
    format: Literal["gif", "webp"] = "gif"
    frame_ms: int = Field(80, ge=20, le=2000, strict=True, description="how long each picture shows")


class StripIn(StateIn):
    knob: str = Field(min_length=1, max_length=MAX_NAME, description="the knob to sweep")
    span: float = Field(3.0, gt=0, le=MAX_KNOB, allow_inf_nan=False, strict=True, description="sweep −span…+span σ")
    steps: int = Field(7, ge=2, le=15, strict=True)
    size: int = Field(128, ge=16, le=512, strict=True, description="size of each tile in px")


class KnobName:
    """A knob name valid on this server now: ``names()`` is read at each validation (the set grows with taught
    knobs), and the OpenAPI document lists the names served when it is made."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self.names = names

    def check(self, value: str) -> str:
        names = self.names()
        if value not in names:
            raise PydanticCustomError("unknown_knob", "unknown feature '{name}'; valid names: {valid}",
                                      {"name": value, "valid": ", ".join(names)})
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(str))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.names())}


def lock_names(knobs: Sequence[str]) -> list[str]:
    """What may be locked: the knobs, and ``identity`` (the person: held by exact edits, measured by linear ones)
    unless a knob is called that."""
    return [*knobs, IDENTITY] if IDENTITY not in knobs else list(knobs)


def knob_schemas(names: Callable[[], Sequence[str]]) -> dict[str, Any]:
    """The request models with knob names declared as an enum of ``names()`` (the knobs served now).

    Returns {"EditIn", "StateIn", "RenderIn", "StripIn", "SweepIn", "CheckIn"}: subclasses of the models above, so fields
    added to those are inherited. Unknown names are then refused by validation, and the OpenAPI
    description lists the valid ones.
    """
    knob = Annotated[str, KnobName(names)]
    lock = Annotated[str, KnobName(lambda: lock_names(names()))]  # a knob, or identity
    doc = "a knob of this server's axis set"
    edit = create_model("EditIn", __base__=EditIn, __doc__=EditIn.__doc__,
                        knob=(knob, Field(description=doc)),
                        locks=(list[lock], Field(default_factory=list, max_length=MAX_LOCKS, description=LOCKS_DOC)))
    state_fields: dict[str, Any] = {
        "edits": (list[edit], Field(default_factory=list, max_length=MAX_EDITS)),
        "locks": (list[lock], Field(default_factory=list, max_length=MAX_LOCKS,
                                    description="locked now: " + LOCKS_DOC)),
    }
    out: dict[str, Any] = {"EditIn": edit}
    for base in (StateIn, RenderIn):
        out[base.__name__] = create_model(base.__name__, __base__=base, __doc__=base.__doc__, **state_fields)
    for base in (StripIn, SweepIn):
        out[base.__name__] = create_model(base.__name__, __base__=base, __doc__=base.__doc__, **state_fields,
                                          knob=(knob, Field(description="the knob to sweep")))
    # for /api/check: knob names as plain strings, so a link made with other axes can be examined
    link_edit = create_model("LinkEditIn", __base__=EditIn, __doc__=EditIn.__doc__)
    out["CheckIn"] = create_model("CheckIn", __base__=StateIn, __doc__=StateIn.__doc__,
                                  edits=(list[link_edit], Field(default_factory=list, max_length=MAX_EDITS)))
    return out
