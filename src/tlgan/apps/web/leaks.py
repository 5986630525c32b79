"""What else each knob drags along: its largest re-scoring leaks, computed once per axis set and cached on disk.

The leaks come from the library's evaluation (``tlgan.evaluation.evaluate``,
the re-scoring matrix of ``tlgan evaluate``): fresh faces are moved along each
axis and re-read by the extractor; entry (k, j) is how many standard
deviations feature j changes per σ of knob k. A knob's leaks are its largest
entries for features other than its own. Measuring takes a while (faces ×
sweep × knobs renders), so it runs once, on a background thread at the lowest
CPU priority, and the result is stored in a JSON file named by a hash of
everything it depends on (the axes, generator, extractor and settings).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path
from typing import Any

from tlgan.atomic import write_text_atomic
from tlgan.axes.store import AxisSet
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator

FACES = 48          # fresh faces per knob: enough to rank the leaks, quick on a CPU
TOP = 3             # leaks listed per knob
MIN_EFFECT = 0.1    # feature SDs per σ below which a leak is not worth showing


def default_cache_dir() -> Path:
    """$TLGAN_CACHE, else $XDG_CACHE_HOME/tlgan, else ~/.cache/tlgan; leaks go in its 'leaks' folder."""
    root = os.environ.get("TLGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tlgan")
    return Path(root) / "leaks"


def leak_key(generator: Generator, axes: AxisSet, extractor: Extractor, faces: int) -> str:
    """A hash of everything the leaks depend on."""
    h = hashlib.sha256()
    h.update(axes.axes.detach().to("cpu").contiguous().numpy().tobytes())
    h.update(json.dumps([axes.names, generator.identity, extractor.identity, faces, 1]).encode())
    return h.hexdigest()[:32]


def largest_leaks(matrix: list[list[float]], axis_names: list[str], features: list[str],
                  targets: dict[str, str | None], top: int = TOP, min_effect: float = MIN_EFFECT
                  ) -> dict[str, list[dict[str, Any]]]:
    """Per knob, its ``top`` largest |effects| (K, F) on features other than its own target, strongest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, row in zip(axis_names, matrix):
        pairs = [(f, v) for f, v in zip(features, row)
                 if f not in (targets.get(name), name) and v is not None and math.isfinite(v) and abs(v) >= min_effect]
        pairs.sort(key=lambda p: -abs(p[1]))
        out[name] = [{"feature": f, "effect": round(float(v), 3)} for f, v in pairs[:top]]
    return out


def compute_leaks(generator: Generator, axes: AxisSet, extractor: Extractor, faces: int = FACES) -> dict[str, Any]:
    """Run the evaluation (free moves only) and keep each knob's largest leaks."""
    from tlgan.evaluation.evaluate import DEFAULT_SEED, evaluate

    seed = DEFAULT_SEED if axes.seed != DEFAULT_SEED else DEFAULT_SEED + 1
    result = evaluate(generator, extractor, axes, n=faces, seed=seed, locked=False, strip_faces=0, progress=False)
    data = result.to_dict()
    targets = {a["name"]: a["target"] for a in data["axes"]}
    leaks = largest_leaks(data["rescoring"]["values"], data["rescoring"]["rows"], data["features"], targets)
    return {"faces": faces, "seed": seed, "unit": "feature SDs per σ of the knob", "leaks": leaks}


class LeakTable:
    """The leaks of one app's knobs: read from the cache, or computed once on a background thread.

    ``status``: 'computing', 'ready' or 'failed: reason'; ``data`` once ready.
    """

    def __init__(self, generator: Generator, axes: AxisSet, extractor: Extractor, cache_dir: Path,
                 faces: int = FACES) -> None:
        self.path = Path(cache_dir) / f"{leak_key(generator, axes, extractor, faces)}.json"
        self.status, self.data = "computing", None
        cached = self._read()
        if cached is not None:
            self.status, self.data = "ready", cached
            return
        self._thread = threading.Thread(target=self._run, args=(generator, axes, extractor, faces),
                                        name="tlgan-leaks", daemon=True)
        self._thread.start()

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _run(self, generator: Generator, axes: AxisSet, extractor: Extractor, faces: int) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # behind every interactive frame
        except (OSError, AttributeError):
            pass
        try:
            data = compute_leaks(generator, axes, extractor, faces)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(data, indent=1))
            self.data, self.status = data, "ready"
        except Exception as exc:  # reported by /api/leaks; the app works without
            self.status = f"failed: {type(exc).__name__}: {exc}"

    def answer(self) -> dict[str, Any]:
        return {"status": self.status.split(":")[0], "detail": self.status if self.status.startswith("failed") else None,
                **(self.data or {})}
