"""The latent file: one inverted face as JSON, usable like a seed by ``tlgan edit --latent``, the web app and Python.

Layout (format ``tlgan-latent``, version 1)::

    {"format": "tlgan-latent", "version": 1,
     "generator": "<identity>", "resolution": R, "space": "z" | "w" | "w+",
     "shape": [...], "latent": [...],                       # flat list of float32 values
     "quality": {"psnr_db": ..., "start_psnr_db": ..., "perceptual": ..., "steps": ..., "seed": ...},
     "photo": {"name": ..., "width": W, "height": H, "sha256": ..., "face": i, "faces": n,
               "box": [x1, y1, x2, y2], "landmarks": [[x, y] x 5]} | null,
     "alignment": {"matrix": [[a, -b, tx], [b, a, ty]],    # photo pixels -> generator pixels
                   "layout": [[x, y] x 5], "layout_faces": n, "detector": "<identity>"} | null,
     "tuning": {"file": "NAME.tune.safetensors", "sha256": ...}}     # only when the photo was tuned (beside this file)

No timestamps: the same inversion writes the same bytes. Written atomically.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tlgan.atomic import write_text_atomic
from tlgan.errors import TlganError

FORMAT, VERSION = "tlgan-latent", 1
MAX_FILE_BYTES = 16 * 1024 * 1024


@dataclass
class LatentFile:
    """A latent with where it came from. ``latent``: (D,) for z and w, (num_ws, w_dim) for w+, float32."""

    generator: str
    resolution: int
    space: str
    latent: torch.Tensor
    quality: dict[str, Any]
    photo: dict[str, Any] | None = None
    alignment: dict[str, Any] | None = None
    tuning: dict[str, str] | None = None    # {"file": name beside the latent file, "sha256": of its bytes}

    def matrix(self) -> torch.Tensor:
        """The alignment (2, 3) float64 taking photo pixels to generator pixels."""
        if not self.alignment:
            raise TlganError("this latent file has no alignment (it was not made from a photo): cannot paste it back")
        return torch.tensor(self.alignment["matrix"], dtype=torch.float64)

    def to_json(self) -> str:
        data = {"format": FORMAT, "version": VERSION, "generator": self.generator, "resolution": self.resolution,
                "space": self.space, "shape": list(self.latent.shape),
                "latent": [float(v) for v in self.latent.detach().float().cpu().flatten().tolist()],
                "quality": self.quality, "photo": self.photo, "alignment": self.alignment}
        if self.tuning:
            data["tuning"] = self.tuning
        return json.dumps(data, indent=1) + "\n"


def save_latent_file(path: str | Path, latent_file: LatentFile) -> None:
    """Write atomically (the same content gives the same bytes)."""
    if Path(path).suffix.lower() != ".json":
        raise TlganError(f"latent file must end in .json: {path}")
    write_text_atomic(path, latent_file.to_json())


def parse_latent_file(text: str | bytes, label: str = "latent file") -> LatentFile:
    """Check and read the JSON text of a latent file; every problem is a one-line TlganError."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise TlganError(f"{label} is not JSON (expected a tlgan latent file from 'tlgan invert')") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TlganError(f"{label} is not a tlgan latent file (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise TlganError(f"{label} has version {data.get('version')!r}; this tlgan reads version {VERSION}")
    try:
        shape = [int(s) for s in data["shape"]]
        values = [float(v) for v in data["latent"]]
        space, generator = str(data["space"]), str(data["generator"])
        resolution = int(data["resolution"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TlganError(f"{label} is malformed: {exc.__class__.__name__} {exc}") from None
    if space not in ("z", "w", "w+"):
        raise TlganError(f"{label}: unknown latent space '{space}'")
    if not shape or math.prod(shape) != len(values) or len(shape) != (2 if space == "w+" else 1):
        raise TlganError(f"{label}: latent has {len(values)} values, which does not fit its shape {shape} in space {space}")
    if not all(math.isfinite(v) for v in values):
        raise TlganError(f"{label}: latent contains NaN or infinite values")
    alignment = data.get("alignment")
    if alignment is not None:
        try:
            m = torch.tensor(alignment["matrix"], dtype=torch.float64)
            ok = m.shape == (2, 3) and bool(torch.isfinite(m).all()) and abs(float(torch.linalg.det(m[:, :2]))) > 1e-12
        except (KeyError, TypeError, ValueError, RuntimeError):
            ok = False
        if not ok:
            raise TlganError(f"{label}: alignment matrix must be a finite, invertible 2x3 matrix")
    tuning = data.get("tuning")
    if tuning is not None:
        name, digest = (tuning.get("file"), tuning.get("sha256")) if isinstance(tuning, dict) else (None, None)
        if not (isinstance(name, str) and isinstance(digest, str) and name.endswith(".safetensors")
                and "/" not in name and "\\" not in name and name not in (".", "..") and len(digest) == 64):
            raise TlganError(f"{label}: 'tuning' must name a .safetensors file beside it (no folders) and its sha256")
        tuning = {"file": name, "sha256": digest}
    return LatentFile(generator, resolution, space, torch.tensor(values, dtype=torch.float32).reshape(shape),
                      dict(data.get("quality") or {}), data.get("photo"), alignment, tuning)


def load_latent_file(path: str | Path) -> LatentFile:
    """Read a latent file written by ``tlgan invert``."""
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"latent file {path} does not exist")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TlganError(f"latent file {path} is too large to be a latent file")
    return parse_latent_file(path.read_bytes(), str(path))


def check_for(latent_file: LatentFile, generator: Any, latent_space: str = "z") -> None:
    """Raise unless the latent belongs to this generator and the axes' latent space."""
    identity = getattr(generator, "identity", "")
    if latent_file.generator != identity:
        raise TlganError(f"latent file was made for generator {latent_file.generator}, not {identity}")
    if latent_file.space != latent_space:
        raise TlganError(f"latent file is in space '{latent_file.space}' but the knobs are in '{latent_space}'; "
                         f"invert with --space {latent_space}")
