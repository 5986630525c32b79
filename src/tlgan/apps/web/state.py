"""From a request's (seed, edits, locks) to the Editor state it names, with a small cache.

Requests are stateless: each carries the whole edit list, and the server
replays it with the library's Editor. While a slider is dragged, successive
requests differ only in their last edit, so the state reached by all edits
but the last is cached; a frame then costs one edit, not the whole list.
Exact edits (a per-face path each, up to seconds on a CPU) make the cache
matter more: every prefix reached is cached, a request starts from the
longest cached prefix of its edit list, and paths are computed one at a time
(a second request for the same state waits and then finds it cached). A
cached latent is the very tensor replaying would produce, so the cache never
changes a result (tests compare the bytes with it on and off).

Identity (how far the face is from the one it started as) is read through one
IdentityWatch per server: the identity network is loaded, and the generator's
stranger distance measured, once; each start face's descriptor is cached too.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Edit, Editor
from tlgan.editing.exact import fixed_cpu_threads
from tlgan.editing.identity import IDENTITY, IdentityWatch
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.latents import slerp
from tlgan.sampling.spaces import face_latent


class Replayer:
    """Rebuilds Editors from (seed, edits, locks); thread-safe; keeps ``capacity`` recent latents.

    ``extractor`` is what exact edits read (None: the axes' own, loaded when first needed);
    ``cache=False`` turns the cache off (for tests).
    """

    def __init__(self, generator: Generator, axes: AxisSet, capacity: int = 512, extractor: Extractor | None = None,
                 cache: bool = True) -> None:
        self.generator, self.axes, self.capacity, self.extractor = generator, axes, capacity, extractor
        self.use_cache = cache
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, list]] = OrderedDict()
        self._lock = threading.Lock()
        self._version = 0
        self._compute = threading.Lock()  # exact paths are computed one at a time
        self._reader = None  # one ReadingModel shared by every Editor (its stats are derived once)
        self.hits = 0
        # one identity reader shared by every Editor: dlib's network loaded, the stranger distance measured, once
        self.identity_watch = IdentityWatch(generator)
        self._identity_lock = threading.Lock()
        self._identity_missing: str | None = None   # why identity cannot be read here (weights not installed, ...)
        self._references: OrderedDict[tuple, torch.Tensor | str] = OrderedDict()  # start face -> descriptor or why not

    def set_axes(self, axes: AxisSet) -> None:
        """Serve a new knob set (taught knobs added, refitted or removed); states cached under the old one are dropped."""
        axes.check_generator(self.generator)
        with self._lock:
            self.axes, self._version = axes, self._version + 1
            self._cache.clear()
            self._reader = None

    def _get(self, key: tuple) -> tuple[torch.Tensor, list] | None:
        if not self.use_cache:
            return None
        with self._lock:
            item = self._cache.get(key)
            if item is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            return item

    def _put(self, key: tuple, z: torch.Tensor, reports: list) -> None:
        if not self.use_cache:
            return
        with self._lock:
            self._cache[key] = (z.clone(), list(reports))
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)

    def start(self, seed: int, mix: tuple[int, float] | None = None, axes: AxisSet | None = None) -> Editor:
        """A fresh Editor on face ``seed``, or on its blend with face mix[0], mix[1] of the way (slerp), with
        ``axes`` (default: the knob set served now); it shares this replayer's extractor and reading model
        (what exact edits read)."""
        editor = Editor(self.generator, axes or self.axes, seed, extractor=self.extractor,
                        identity=self.identity_watch)
        if self._reader is not None:
            editor.extractor, editor._reader = self._reader.extractor, self._reader
        if mix is not None and mix[1] > 0:
            other = face_latent(self.generator, mix[0])
            editor.new_latent(slerp(editor.z, other, mix[1]).to(editor.z.dtype))  # the blend is the start face
        return editor

    def editor(self, seed: int, edits: Sequence[Edit], locks: Sequence[str] = (),
               mix: tuple[int, float] | None = None) -> Editor:
        """The Editor reached from face ``seed`` (blended as ``mix`` says) by ``edits``, with ``locks``
        current (raises TlganError). Cache keys hold the start (knob-set version, seed, mix) and the edits
        themselves, each with its mode, so linear and exact states never share an entry."""
        edits = tuple(edits)
        with self._lock:  # the knob set and its version together (set_axes may swap them)
            version = self._version
            editor = self.start(seed, mix)
        start = (version, seed, None if mix is None or mix[1] <= 0 else mix)
        item = self._get((start, edits))
        if item is None and edits:
            with self._compute if any(e.exact for e in edits) else nullcontext():
                item = self._get((start, edits))  # another request may have computed it meanwhile
                if item is None:
                    n0 = next((n for n in range(len(edits) - 1, 0, -1) if self._get((start, edits[:n]))), 0)
                    if n0:
                        z, reports = self._get((start, edits[:n0]))  # type: ignore[misc]
                        editor.z, editor.edits, editor.reports = z.clone(), list(edits[:n0]), list(reports)
                    for n in range(n0, len(edits)):
                        editor.apply(edits[n])
                        if edits[n].exact or n >= len(edits) - 2:  # every exact prefix, and the drag's base
                            self._put((start, edits[:n + 1]), editor.z, editor.reports)
                    if editor._reader is not None and version == self._version:  # not for a replaced knob set
                        self._reader = editor._reader
                    item = (editor.z, editor.reports)
        if item is not None:
            editor.z, editor.edits, editor.reports = item[0].clone(), list(edits), list(item[1])
        editor.set_locks(locks)
        return editor

    def identity(self, editor: Editor, seed: int, mix: tuple[int, float] | None = None) -> dict:
        """The identity reading of ``editor``'s face against the face it started as (face ``seed``, blended as
        ``mix`` says): {'identity': IdentityCheck.to_dict() or None, 'detail': why it is None, else None}.

        A start face whose landmarks cannot be found gives found=False with that said in 'message'; where
        identity cannot be read at all (its weights are not installed) 'identity' is None.
        """
        if self._identity_missing is not None:
            return {"identity": None, "detail": self._identity_missing}
        watch = self.identity_watch
        try:
            with self._identity_lock:  # loaded and measured once, not by every request that arrives first
                watch.stranger  # noqa: B018  (loads the model; measures or reads the cached stranger distance)
        except TlganError as exc:
            self._identity_missing = str(exc)
            return {"identity": None, "detail": self._identity_missing}
        key = (seed, None if mix is None or mix[1] <= 0 else mix)
        with self._lock:
            reference = self._references.get(key)
        device = next((p.device for p in self.generator.parameters()), torch.device("cpu"))
        with fixed_cpu_threads(device):  # the same figures at any thread count, as Editor.identity gives
            if reference is None:
                start = editor.start_latent if editor.start_latent is not None else face_latent(editor.generator, seed)
                try:
                    reference = watch.reference(start.to(torch.float64))
                except TlganError as exc:
                    reference = str(exc)
                with self._lock:
                    self._references[key] = reference
                    while len(self._references) > self.capacity:
                        self._references.popitem(last=False)
            if isinstance(reference, str):  # no face found in the start image: said, never a number
                return {"identity": {"distance": None, "found": False, "tolerance": watch.tolerance,
                                     "stranger": watch.stranger, "kept": False, "message": reference},
                        "detail": None}
            return {"identity": watch.check(editor.z, reference).to_dict(), "detail": None}

    def check(self, seed: int, edits: Sequence[Edit], locks: Sequence[str] = (),
              mix: tuple[int, float] | None = None) -> dict:
        """How much of (seed, edits, locks) replays: {valid_edits: n, detail: the first failure or None,
        valid_locks: the locks that name knobs}. For links made with other axes or edited by hand."""
        with self._lock:
            axes = self.axes
        editor = self.start(seed, mix, axes)
        detail = None
        for edit in edits:
            try:
                editor.apply(edit)
            except TlganError as exc:
                detail = str(exc)
                break
        known = {*axes.names, IDENTITY}
        return {"valid_edits": len(editor.edits), "detail": detail, "valid_locks": [k for k in locks if k in known]}
