"""Sample -> render -> label, in batches, into resumable shards on disk.

A run writes ``manifest.json`` and shards ``shard-<start>-<count>.safetensors``
(tensors ``z`` (B, D) and ``features`` (B, F), float32) into one folder. Each
shard is written atomically, so Ctrl-C loses at most the shard in progress;
rerunning the same command skips finished shards. Latents come from
``latents.sample_latents``, so results do not depend on batch size or device
order of work.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .atomic import atomic_path, write_text_atomic
from .errors import TlganError
from .extractors import Extractor, Feature
from .generators import Generator
from .latents import check_seed, sample_latents

SHARD_SIZE = 4096
MAX_SAMPLES = 100_000_000
_SHARD_RE = re.compile(r"^shard-(\d{10})-(\d+)\.safetensors$")


@dataclass
class Manifest:
    """What a sample folder holds; a rerun must match it to resume."""

    generator: str
    extractor: str
    latent_dim: int
    features: list[dict]
    seed: int
    n: int
    shard_size: int

    @property
    def feature_list(self) -> list[Feature]:
        return [Feature(**f) for f in self.features]

    def compatible(self, other: "Manifest") -> bool:
        """Same samples up to n: everything but n agrees."""
        a, b = asdict(self), asdict(other)
        a.pop("n"), b.pop("n")
        return a == b


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise TlganError(f"{folder} is not a sample folder (no manifest.json)")
    try:
        return Manifest(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise TlganError(f"{path} is corrupt: {exc}") from None


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """(start, count) of each shard covering samples [0, n)."""
    return [(s, min(shard_size, n - s)) for s in range(0, n, shard_size)]


def shard_path(folder: Path, start: int, count: int) -> Path:
    return folder / f"shard-{start:010d}-{count}.safetensors"


@torch.inference_mode()
def label(generator: Generator, extractor: Extractor, z: torch.Tensor) -> torch.Tensor:
    """Render latents (B, D) and read features (B, F) float32, on the generator's device."""
    return extractor(generator(z)).float()


def run_samples(
    generator: Generator,
    extractor: Extractor,
    n: int,
    seed: int,
    folder: str | Path,
    batch_size: int = 256,
    shard_size: int = SHARD_SIZE,
    progress: bool = True,
) -> Manifest:
    """Sample, render and label ``n`` latents of run ``seed`` into ``folder``, resuming finished shards.

    Raises TlganError for bad parameters, or when ``folder`` holds samples of
    another generator, extractor or seed. KeyboardInterrupt leaves every
    finished shard in place.
    """
    if not isinstance(n, int) or not 0 < n <= MAX_SAMPLES:
        raise TlganError(f"N must be between 1 and {MAX_SAMPLES:,}, got {n}")
    if not 0 < batch_size <= 1 << 20:
        raise TlganError(f"batch size must be between 1 and 1048576, got {batch_size}")
    check_seed(seed)
    folder = Path(folder)
    manifest = Manifest(generator.identity, extractor.identity, generator.latent_dim,
                        [asdict(f) for f in extractor.features], seed, n, shard_size)
    if (folder / "manifest.json").exists():
        old = read_manifest(folder)
        if not old.compatible(manifest):
            raise TlganError(f"{folder} holds samples from another generator, extractor, seed or shard size; "
                             "use another --samples folder or delete it")
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "manifest.json", json.dumps(asdict(manifest), indent=1))

    device = next(generator.parameters(), torch.empty(0)).device
    todo = [(s, c) for s, c in shard_ranges(n, shard_size) if not shard_path(folder, s, c).exists()]
    done = n - sum(c for _, c in todo)
    with tqdm(total=n, initial=done, unit="img", desc="sample+label", disable=not progress, dynamic_ncols=True) as bar:
        for start, count in todo:
            z = sample_latents(seed, start, count, generator.latent_dim)
            feats = []
            for b in range(0, count, batch_size):
                zb = z[b: b + batch_size].to(device, non_blocking=True)
                feats.append(label(generator, extractor, zb).cpu())
                bar.update(zb.shape[0])
            features = torch.cat(feats)
            bad = ~torch.isfinite(features).all(0)
            if bool(bad.any()):
                names = [f.name for f, b in zip(extractor.features, bad) if b]
                raise TlganError(f"extractor gave NaN or infinite readings for: {', '.join(names)}")
            with atomic_path(shard_path(folder, start, count)) as tmp:
                save_file({"z": z.contiguous(), "features": features.contiguous()}, str(tmp))
    return manifest


def iter_shards(folder: str | Path, n: int | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (start, z (B, D), features (B, F)) for the shards covering the first ``n`` samples (all by default)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    n = manifest.n if n is None else n
    if n > manifest.n:
        raise TlganError(f"{folder} holds {manifest.n} samples, {n} asked for")
    for start, count in shard_ranges(n, manifest.shard_size):
        path = shard_path(folder, start, count)
        if not path.exists():
            raise TlganError(f"{folder} is incomplete (missing {path.name}); rerun the sampling command to resume")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise TlganError(f"{path} is corrupt ({exc}); delete it and rerun to resume") from None
        z, f = tensors.get("z"), tensors.get("features")
        if z is None or f is None or z.shape != (count, manifest.latent_dim) or f.shape != (count, len(manifest.features)):
            raise TlganError(f"{path} does not match the manifest; delete it and rerun to resume")
        yield start, z, f


def load_samples(folder: str | Path) -> tuple[Manifest, torch.Tensor, torch.Tensor]:
    """All samples of a folder in memory: (manifest, z (N, D), features (N, F))."""
    manifest = read_manifest(folder)
    parts = list(iter_shards(folder))
    return manifest, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def set_cpu_threads() -> None:
    """Use every core for intra-op work (torch defaults to physical cores, which can be fewer)."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
