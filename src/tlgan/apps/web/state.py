"""From a request's (seed, edits, locks) to the Editor state it names, with a small cache.

Requests are stateless: each carries the whole edit list, and the server
replays it with the library's Editor. While a slider is dragged, successive
requests differ only in their last edit, so the state reached by all edits
but the last is cached; a frame then costs one edit, not the whole list.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import torch

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Edit, Editor
from tlgan.models.generators import Generator


class Replayer:
    """Rebuilds Editors from (seed, edits, locks); thread-safe; keeps ``capacity`` recent latents."""

    def __init__(self, generator: Generator, axes: AxisSet, capacity: int = 512) -> None:
        self.generator, self.axes, self.capacity = generator, axes, capacity
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._version = 0
        self.hits = 0

    def set_axes(self, axes: AxisSet) -> None:
        """Serve a new knob set (taught knobs added, refitted or removed); states cached under the old one are dropped."""
        axes.check_generator(self.generator)
        with self._lock:
            self.axes, self._version = axes, self._version + 1
            self._cache.clear()

    def _get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            z = self._cache.get(key)
            if z is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            return z

    def _put(self, key: tuple, z: torch.Tensor) -> None:
        with self._lock:
            self._cache[key] = z
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)

    def editor(self, seed: int, edits: Sequence[Edit], locks: Sequence[str] = ()) -> Editor:
        """The Editor reached from face ``seed`` by ``edits``, with ``locks`` current (raises TlganError)."""
        edits = tuple(edits)
        with self._lock:
            axes, version = self.axes, self._version
        editor = Editor(self.generator, axes, seed)
        key = (version, seed, edits)
        z = self._get(key)
        if z is None and edits:
            prefix = self._get((version, seed, edits[:-1]))
            if prefix is not None:
                editor.z, editor.edits = prefix.clone(), list(edits[:-1])
                editor.apply(edits[-1])
            else:
                for i, edit in enumerate(edits):
                    editor.apply(edit)
                    if i == len(edits) - 2:
                        self._put((version, seed, edits[:-1]), editor.z.clone())
            self._put(key, editor.z.clone())
        elif z is not None:
            editor.z, editor.edits = z.clone(), list(edits)
        editor.set_locks(locks)
        return editor
