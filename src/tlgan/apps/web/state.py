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
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import torch

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Edit, Editor
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator


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
        self._compute = threading.Lock()
        self._reader = None  # one ReadingModel shared by every Editor (its stats are derived once)
        self.hits = 0

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

    def new_editor(self, seed: int) -> Editor:
        """A fresh Editor on face ``seed`` sharing this replayer's extractor and reading model."""
        editor = Editor(self.generator, self.axes, seed, extractor=self.extractor)
        if self._reader is not None:
            editor.extractor, editor._reader = self._reader.extractor, self._reader
        return editor

    def editor(self, seed: int, edits: Sequence[Edit], locks: Sequence[str] = ()) -> Editor:
        """The Editor reached from face ``seed`` by ``edits``, with ``locks`` current (raises TlganError)."""
        edits = tuple(edits)
        editor = self.new_editor(seed)
        item = self._get((seed, edits))
        if item is None and edits:
            with self._compute if any(e.exact for e in edits) else _NO_LOCK:
                item = self._get((seed, edits))  # another request may have computed it meanwhile
                if item is None:
                    start = next((n for n in range(len(edits) - 1, 0, -1) if self._get((seed, edits[:n]))), 0)
                    if start:
                        z, reports = self._get((seed, edits[:start]))  # type: ignore[misc]
                        editor.z, editor.edits, editor.reports = z.clone(), list(edits[:start]), list(reports)
                    for n in range(start, len(edits)):
                        editor.apply(edits[n])
                        if edits[n].exact or n >= len(edits) - 2:
                            self._put((seed, edits[:n + 1]), editor.z, editor.reports)
                    if editor._reader is not None:
                        self._reader = editor._reader
                    item = (editor.z, editor.reports)
        if item is not None and edits:
            editor.z, editor.edits, editor.reports = item[0].clone(), list(edits), list(item[1])
        editor.set_locks(locks)
        return editor


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()
