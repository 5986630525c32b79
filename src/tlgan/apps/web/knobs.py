"""Taught knobs in the web app: teach a knob from clicked faces, keep it in the library, share it in links.

Endpoints (all under /api/knobs; bad input gets 422 with a one-line ``detail``):
  GET    /api/knobs           the taught knobs (saved, draft, shared) with their labels' figures and knob codes
  POST   /api/knobs           {name, labels: [{seed, label}], save, replace} -> fit (or refit) the knob
  POST   /api/knobs/suggest   {labels, count, pool} -> the seeds to label next
  POST   /api/knobs/shared    {name, code} -> serve a knob that came in a shared link (kept in memory)
  GET    /api/knobs/{name}    one taught knob, with its labels (to extend it)
  DELETE /api/knobs/{name}    remove a taught knob (and its library file)
A taught knob joins the served knob set (group "taught") as soon as it is
fitted, so strips, locks and edits use it like any knob; ``save`` writes it to
the library folder, where ``tlgan serve`` finds it after a restart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from tlgan.axes.ops import check_axis_name
from tlgan.axes.store import AxisSet
from tlgan.editing.active import (
    MAX_LABELS,
    MIN_LABELS,
    MIN_PER_CLASS,
    RANDOM_SHARE,
    suggest,
)
from tlgan.editing.library import (
    KnobLibrary,
    as_knob,
    axis_from_code,
    in_space,
    knob_code,
    knob_examples,
    knob_record,
    make_knob,
    merge_knobs,
    teaching_aid,
)
from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.latents import MAX_SEED

from .info import error_response, feature_unit
from .state import Replayer

MAX_NAME = 64
MAX_CODE = 8192


class LabelIn(BaseModel):
    """One answer: face ``seed`` has the feature (1) or doesn't (0)."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0, le=MAX_SEED, strict=True)
    label: Literal[0, 1]


class KnobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=MAX_NAME, description="the new knob's name: letters, digits, '_', '.', '-'")
    labels: list[LabelIn] = Field(max_length=MAX_LABELS)
    save: bool = Field(True, description="write the knob to the library (false: a draft, served but not saved)")
    replace: bool = Field(False, description="refit an existing taught knob of that name")


class SuggestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[LabelIn] = Field(default_factory=list, max_length=MAX_LABELS)
    count: int = Field(16, ge=1, le=64, strict=True)
    pool: int = Field(0, ge=0, le=2**31 - 1, strict=True, description="which pool of candidate faces to pick from")
    random_share: float = Field(RANDOM_SHARE, ge=0, le=1, allow_inf_nan=False)


class SharedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=MAX_NAME)
    code: str = Field(min_length=1, max_length=MAX_CODE, description="the knob code from a shared link")


@dataclass
class _Entry:
    knob: AxisSet          # one axis
    status: str            # 'saved' | 'draft' | 'shared'


def _examples(labels: list[LabelIn]) -> list[tuple[int, int]]:
    return [(item.seed, int(item.label)) for item in labels]


class KnobBook:
    """The taught knobs a server serves on top of its built-in ones; every change re-publishes ``replayer.axes``."""

    def __init__(self, generator: Generator, base: AxisSet, replayer: Replayer, library: KnobLibrary | None,
                 teacher: str = "looks") -> None:
        self.generator, self.base, self.replayer, self.library = generator, base, replayer, library
        self.entries: dict[str, _Entry] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()
        self.teacher, self._aid, self._aid_lock = teacher, None, threading.Lock()
        if library is not None:
            knobs, self.notes = library.for_generator(generator)
            for knob in knobs:
                if knob.names[0] in base.names:
                    self.notes.append(f"skipped taught knob '{knob.names[0]}': a built-in knob has that name")
                else:
                    self.entries[knob.names[0]] = _Entry(knob, "saved")
            self._publish()

    def aid(self) -> tuple[Any, Any]:
        """(scale, looks) for fits and suggestions (``library.teaching_aid``), made on first use.

        Making it renders 2,000 faces ('looks') or runs a few hundred backward passes ('sensitivity') in the
        request's thread, once per generator and machine (cached on disk).
        """
        with self._aid_lock:
            if self._aid is None:
                self._aid = teaching_aid(self.generator, self.teacher)
            return self._aid

    def _publish(self) -> None:
        self.replayer.set_axes(merge_knobs(self.base, [e.knob for e in self.entries.values()]))

    def _check_new_name(self, name: str, replace: bool) -> None:
        if not name.strip():
            raise TlganError("the knob needs a name")
        if name in self.base.names:
            raise TlganError(f"'{name}' is a built-in knob; choose another name")
        if name in self.entries and not replace:
            raise TlganError(f"there is already a taught knob '{name}'; choose another name (or send replace: true "
                             "to refit it)")
        if name not in self.entries and self.library is not None and name in self.library:
            raise TlganError(f"the knob library already has a knob '{name}' (for another generator); choose another name")

    def describe(self, name: str) -> dict[str, Any]:
        entry = self.entries[name]
        knob, record = entry.knob, knob_record(entry.knob)
        quality, description = knob.quality.get(name, {}), knob.descriptions.get(name, "")
        return {
            "name": name, "label": name.replace("_", " "), "kind": knob.kinds[0], "group": "taught", "r2": None,
            "weak": False, "description": description, "shown": True, "unit": feature_unit(knob.kinds[0], description),
            "status": entry.status, "cv_accuracy": quality.get("accuracy"), "train_accuracy": quality.get("train_accuracy"),
            "labels": record.get("labels"), "positives": record.get("positives"), "folds": record.get("folds"),
            "history": record.get("history", []), "code": knob_code(knob.axes[0], self.generator.identity),
        }

    def put(self, request: KnobIn) -> dict[str, Any]:
        name = request.name
        with self._lock:
            self._check_new_name(name, request.replace)
            check_axis_name(name)
            old = self.entries.get(name)
            history = knob_record(old.knob).get("history", []) if old is not None else []
            examples = _examples(request.labels)
            history = [h for h in history if int(h[0]) != len(examples)]
            scale, looks = self.aid()
            knob = make_knob(name, examples, self.generator.identity, self.generator.latent_dim, history,
                             scale=scale, looks=looks, generator=self.generator)
            if request.save and self.library is not None:
                self.library.save(knob)
            self.entries[name] = _Entry(knob, "saved" if request.save else "draft")
            self._publish()
            return self.describe(name)

    def add_shared(self, request: SharedIn) -> dict[str, Any]:
        name = request.name
        axis = axis_from_code(request.code, self.generator.identity, self.generator.latent_dim, name)
        with self._lock:
            if name in self.entries:
                if knob_code(self.entries[name].knob.axes[0], self.generator.identity) == request.code:
                    return self.describe(name)
                raise TlganError(f"this link's knob '{name}' differs from this server's taught knob '{name}'; "
                                 "rename or delete yours to open the link")
            self._check_new_name(name, False)
            shared = AxisSet(names=[name], axes=axis[None], kinds=["probability"], groups=["taught"],
                             generator=self.generator.identity, latent_dim=self.generator.latent_dim, method="taught",
                             descriptions={name: "taught knob from a shared link"})
            self.entries[name] = _Entry(in_space(as_knob(shared), self.generator), "shared")
            self._publish()
            return self.describe(name)

    def delete(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name in self.base.names:
                raise TlganError(f"'{name}' is a built-in knob; only taught knobs can be deleted")
            if name not in self.entries:
                raise HTTPException(404, f"no taught knob '{name}'")
            entry = self.entries.pop(name)
            removed = None
            if entry.status != "shared" and self.library is not None and name in self.library:
                removed = str(self.library.remove(name))
            self._publish()
            return {"deleted": name, "file": removed}

    def get(self, name: str) -> dict[str, Any]:
        """One taught knob as ``describe`` says, with its labels; 404 when there is none of that name."""
        with self._lock:
            if name not in self.entries:
                raise HTTPException(404, f"no taught knob '{name}'")
            examples = knob_examples(self.entries[name].knob)
            return {**self.describe(name), "examples": [{"seed": s, "label": y} for s, y in examples]}

    def listing(self) -> dict[str, Any]:
        with self._lock:
            return {"library": None if self.library is None else str(self.library.folder),
                    "min_labels": MIN_LABELS, "min_per_class": MIN_PER_CLASS, "max_labels": MAX_LABELS,
                    "knobs": [self.describe(n) for n in self.entries], "notes": list(self.notes)}


def _book(http: Request) -> KnobBook:
    return http.app.state.knobs


def _run(http: Request, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """Run model work (fits, the prior, suggestions) on the app's work pool (``app.state.tlgan.work``)."""
    return http.app.state.tlgan.work.run(fn, *args)


router = APIRouter(prefix="/api/knobs", tags=["taught knobs"], responses={422: error_response(
    "bad request: the one-line reason is in `detail`", "there is already a taught knob 'bangs'; choose another name")})


@router.get("", summary="The taught knobs")
async def listing(http: Request) -> dict[str, Any]:
    return _book(http).listing()


@router.post("", summary="Teach (or refit) a knob from labelled faces")
async def create(request: KnobIn, http: Request) -> dict[str, Any]:
    return await _run(http, _book(http).put, request)


@router.post("/suggest", summary="The faces to label next")
async def suggestions(request: SuggestIn, http: Request) -> dict[str, Any]:
    book = _book(http)

    def work() -> dict[str, Any]:
        scale, looks = book.aid()
        found = suggest(_examples(request.labels), book.generator.latent_dim, request.count, request.pool,
                        request.random_share, scale=scale, looks=looks, generator=book.generator)
        return {"seeds": found.seeds, "reasons": found.reasons, "pool": request.pool}

    return await _run(http, work)


@router.post("/shared", summary="Serve a taught knob that came in a shared link")
async def shared(request: SharedIn, http: Request) -> dict[str, Any]:
    return _book(http).add_shared(request)


@router.get("/{name}", summary="One taught knob with its labels")
async def one(name: str, http: Request) -> dict[str, Any]:
    return _book(http).get(name)


@router.delete("/{name}", summary="Delete a taught knob (and its library file)")
async def delete(name: str, http: Request) -> dict[str, Any]:
    return _book(http).delete(name)


def include_knobs(app: FastAPI, library: KnobLibrary | None, teacher: str = "looks") -> KnobBook:
    """Serve taught knobs in ``app`` (made by ``create_app``; its WebContext is ``app.state.tlgan``): the library's
    for this generator at once; ``app.state.knobs`` is the book, and the routes are ``router``.

    ``teacher``: how taught knobs are fitted (``tlgan.editing.library.teaching_aid``)."""
    ctx = app.state.tlgan
    book = KnobBook(ctx.generator, ctx.axes, ctx.replayer, library, teacher)
    app.state.knobs = book
    app.include_router(router)
    return book
