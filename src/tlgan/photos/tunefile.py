"""The tuning file: a photo's pivotal-tuning delta, saved beside its latent file (``me.json`` -> ``me.tune.safetensors``).

safetensors tensors ``<parameter>::a`` (rows, r), ``<parameter>::b`` (r, cols) (low-rank updates of weight
matrices) and ``<parameter>::delta`` (vector parameters), float32, with a JSON header under metadata key
``tlgan``::

    {"format": "tlgan-tuning", "version": 1,
     "generator": "<identity>", "weights_sha256": "<hash of the tuned parameters' base values>",
     "space": "z", "latent_sha256": "...", "photo_sha256": "...",
     "settings": {...TuneSettings...}, "quality": {...}, "numel": n}

The latent file names the tuning file and holds its SHA-256, so a file that does not belong to it is
refused; loading also refuses a generator whose identity or weights differ. No timestamps: the same
tuning writes the same bytes. Written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from tlgan.atomic import write_bytes_atomic
from tlgan.errors import TlganError
from tlgan.safefile import read_tlgan_file

from .tune import Delta, weights_hash

FORMAT, VERSION = "tlgan-tuning", 1
SUFFIX = ".tune.safetensors"
MAX_FILE_BYTES = 512 * 1024 * 1024


def latent_hash(latent: torch.Tensor) -> str:
    """Short SHA-256 of a latent's float32 values and shape."""
    digest = hashlib.sha256(str(tuple(latent.shape)).encode())
    digest.update(latent.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def tuning_path(latent_path: str | Path) -> Path:
    """Where the tuning file of a latent file lives: beside it, ``NAME.tune.safetensors`` for ``NAME.json``."""
    path = Path(latent_path)
    return path.with_name(path.stem + SUFFIX)


@dataclass
class TuningFile:
    """A delta and what it belongs to."""

    delta: Delta
    header: dict[str, Any]

    def to_bytes(self) -> bytes:
        return safetensors_bytes(self.delta.tensors(), metadata={"tlgan": json.dumps(self.header, sort_keys=True)})


def make_tuning_file(delta: Delta, generator: Any, space: str, latent: torch.Tensor, photo_sha256: str,
                     settings: dict[str, Any], quality: dict[str, Any]) -> TuningFile:
    header = {"format": FORMAT, "version": VERSION, "generator": getattr(generator, "identity", ""),
              "weights_sha256": weights_hash(generator), "space": space, "latent_sha256": latent_hash(latent),
              "photo_sha256": photo_sha256, "settings": settings, "quality": quality, "numel": delta.numel()}
    return TuningFile(delta, header)


def save_tuning_file(path: str | Path, tuning: TuningFile) -> str:
    """Write atomically; returns the SHA-256 of the bytes written (the latent file records it)."""
    if not str(path).endswith(".safetensors"):
        raise TlganError(f"tuning file must end in .safetensors: {path}")
    data = tuning.to_bytes()
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | Path) -> str:
    return file_sha256_bytes(Path(path).read_bytes())


def file_sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_tuning_file(path: str | Path, sha256: str | None = None) -> TuningFile:
    """Read a tuning file; ``sha256``: the hash its latent file recorded (a different file is refused)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
        raise TlganError(f"tuning file {path} is too large to be a tuning file")
    if sha256 is not None and path.is_file() and file_sha256(path) != sha256:
        raise TlganError(f"tuning file {path} is not the one its latent file was made with (corrupt, or from another "
                         "inversion): run 'tlgan invert' again, or edit with --no-tune")
    tensors, header = read_tlgan_file(path, FORMAT, VERSION, "tuning file")
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float32 or not bool(torch.isfinite(value).all()):
            raise TlganError(f"tuning file {path}: tensor '{key}' is not finite float32")
    for field_name in ("generator", "weights_sha256", "latent_sha256"):
        if not isinstance(header.get(field_name), str):
            raise TlganError(f"tuning file {path}: header field '{field_name}' is missing")
    return TuningFile(Delta.from_tensors(tensors, str(path)), header)


def check_tuning(tuning: TuningFile, generator: Any, latent: torch.Tensor | None = None, label: str = "tuning file") -> None:
    """Refuse (one-line TlganError) a tuning made for another generator, other weights or another latent."""
    identity = getattr(generator, "identity", "")
    if tuning.header["generator"] != identity:
        raise TlganError(f"{label} was made for generator {tuning.header['generator']}, not {identity}")
    if tuning.header["weights_sha256"] != weights_hash(generator):
        raise TlganError(f"{label} was made for other weights of {identity} (weights hash differs)")
    if latent is not None and tuning.header["latent_sha256"] != latent_hash(latent):
        raise TlganError(f"{label} belongs to another latent than its latent file's")
