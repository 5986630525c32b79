"""Sample -> render -> label, in batches, into resumable shards on disk.

A run writes ``manifest.json`` and shards ``shard-<start>-<count>.safetensors``
(tensors ``z`` (B, D) and ``features`` (B, F), float32) into one folder. Each
shard is written atomically, so Ctrl-C loses at most the work in progress;
rerunning the same command skips finished shards. Latents come from
``latents.sample_latents``, so results do not depend on batch size or device
order of work.

Rendering and labelling run fused on the device (fused.Labeller); the only
host round trip per unit of work is the small (B, F) readings array, and
images are never kept, so memory is flat in N.
"""

from __future__ import annotations

import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save, save_file
from tqdm.auto import tqdm

from tlgan.atomic import atomic_path
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor, Feature
from tlgan.models.generators import Generator

from .folder import SampleFolder
from .fused import Labeller, LabelOptions, set_cpu_threads
from .latents import check_seed
from .spaces import draw_latents

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
    dtype: str = "float32"  # the labelling precision (fused.py); absent from older manifests

    @property
    def feature_list(self) -> list[Feature]:
        return [Feature(**f) for f in self.features]

    def compatible(self, other: "Manifest") -> bool:
        """Same samples up to n: everything but n agrees."""
        a, b = asdict(self), asdict(other)
        a.pop("n"), b.pop("n")
        return a == b


def read_manifest(folder: str | Path | SampleFolder) -> Manifest:
    """The manifest of a sample folder (a path or a URI, see folder.py)."""
    folder = folder if isinstance(folder, SampleFolder) else SampleFolder(folder)
    if not folder.exists("manifest.json"):
        raise TlganError(f"{folder} is not a sample folder (no manifest.json)")
    try:
        return Manifest(**json.loads(folder.read_bytes("manifest.json")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise TlganError(f"{folder.path('manifest.json')} is corrupt: {exc}") from None


def prepare_folder(folder: SampleFolder, manifest: Manifest) -> None:
    """Check that ``folder`` holds nothing or samples compatible with ``manifest``, then write the manifest."""
    if folder.exists("manifest.json"):
        old = read_manifest(folder)
        if not old.compatible(manifest):
            raise TlganError(f"{folder} holds samples from another generator, extractor, seed, shard size or dtype; "
                             "use another --samples folder or delete it")
    folder.makedirs()
    folder.write_bytes("manifest.json", json.dumps(asdict(manifest), indent=1).encode())


def shard_name(start: int, count: int) -> str:
    return f"shard-{start:010d}-{count}.safetensors"


def write_shard(folder: SampleFolder, start: int, z: torch.Tensor, features: torch.Tensor) -> None:
    """Write one shard (z (B, D), features (B, F) on the CPU) atomically."""
    tensors = {"z": z.contiguous(), "features": features.contiguous()}
    if folder.local is not None:
        with atomic_path(folder.local / shard_name(start, z.shape[0])) as tmp:
            save_file(tensors, str(tmp))
    else:
        folder.write_bytes(shard_name(start, z.shape[0]), save(tensors))


def read_shard(folder: SampleFolder, manifest: Manifest, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (count, D), features (count, F)) of one shard, checked against the manifest."""
    name = shard_name(start, count)
    if not folder.exists(name):
        raise TlganError(f"{folder} is incomplete (missing {name}); rerun the sampling command to resume")
    where = folder.path(name)
    try:
        tensors = load_file(where) if folder.local is not None else load_bytes(folder.read_bytes(name))
    except (SafetensorError, OSError) as exc:
        raise TlganError(f"{where} is corrupt ({exc}); delete it and rerun to resume") from None
    z, f = tensors.get("z"), tensors.get("features")
    if z is None or f is None or z.shape != (count, manifest.latent_dim) or f.shape != (count, len(manifest.features)):
        raise TlganError(f"{where} does not match the manifest; delete it and rerun to resume")
    return z, f


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """(start, count) of each shard covering samples [0, n)."""
    return [(s, min(shard_size, n - s)) for s in range(0, n, shard_size)]


def shard_path(folder: Path, start: int, count: int) -> Path:
    return folder / shard_name(start, count)


@torch.inference_mode()
def label(generator: Generator, extractor: Extractor, z: torch.Tensor) -> torch.Tensor:
    """Render latents (B, D) and read features (B, F) float32, on the generator's device."""
    return extractor(generator(z)).float()


def check_sample_count(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_SAMPLES:
        raise TlganError(f"N must be between 1 and {MAX_SAMPLES:,}, got {n}")


def group_ranges(ranges: list[tuple[int, int]], batch_size: int) -> list[list[tuple[int, int]]]:
    """Group shard ranges, in order, into work units of at least ``batch_size`` samples (the last may hold fewer).

    A unit is labelled in one go on the device and copied back once, so on a
    GPU a unit spans several shards when batches are larger than shards.
    """
    units: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    total = 0
    for start, count in ranges:
        current.append((start, count))
        total += count
        if total >= batch_size:
            units.append(current)
            current, total = [], 0
    if current:
        units.append(current)
    return units


@dataclass
class LabelledUnit:
    """One unit of work, labelled: the shards it covers and their latents and readings.

    shards: (start, count) of each shard in order; ``spans`` gives each one's
    rows [lo, hi) in the unit's arrays. z and features are on the CPU;
    z_device and features_device are the same on the labelling device.
    """

    shards: list[tuple[int, int]]
    z: torch.Tensor
    features: torch.Tensor
    z_device: torch.Tensor
    features_device: torch.Tensor

    @property
    def spans(self) -> list[tuple[int, int, int]]:
        """(start, lo, hi) of each shard."""
        out, lo = [], 0
        for start, count in self.shards:
            out.append((start, lo, lo + count))
            lo += count
        return out


class _Launched:
    """A unit whose work is queued on the device; ``finish`` waits for it and checks the readings."""

    def __init__(self, shards, z, z_device, features_device, features_host, event, names) -> None:
        self.shards, self.z, self.z_device = shards, z, z_device
        self.features_device, self.features_host, self.event, self.names = features_device, features_host, event, names

    def finish(self) -> LabelledUnit:
        if self.event is not None:
            self.event.synchronize()
        features = self.features_host
        bad = ~torch.isfinite(features).all(0)
        if bool(bad.any()):
            names = [name for name, b in zip(self.names, bad) if b]
            raise TlganError(f"extractor gave NaN or infinite readings for: {', '.join(names)}")
        return LabelledUnit(self.shards, self.z, features, self.z_device, self.features_device)


def _unit_latents(seed: int, shards: list[tuple[int, int]], generator: Generator, pin: bool) -> torch.Tensor:
    # The generator's own seeded latents when it is viewed in another space (spaces.SpaceView: mapped z).
    z = torch.cat([draw_latents(generator, seed, start, count) for start, count in shards])
    return z.pin_memory() if pin else z


def label_ranges(
    labeller: Labeller,
    seed: int,
    units: list[list[tuple[int, int]]],
    consume: Callable[[LabelledUnit], None],
    progress: bool = True,
    total: int | None = None,
    initial: int = 0,
    prefetch: int = 2,
) -> None:
    """Label the samples of ``units`` (lists of (start, count) shards) of run ``seed``; call ``consume`` on each, in order.

    Latents are drawn on the CPU (``sample_latents``: the same on every
    device and batch size) by one worker thread, ``prefetch`` units ahead of
    use, into pinned memory when the device is a GPU. (One thread draws about
    100 M normals/s, enough for a GPU; with two, resident memory crept up with
    every unit, each thread's malloc arena fragmenting.) While the device labels unit i,
    unit i − 1's readings come back (its only host round trip) and are
    consumed. If labelling raises (Ctrl-C included), the unit already
    labelled is still consumed before the error propagates, so no finished
    work is lost.
    """
    device = labeller.device
    on_gpu = device.type == "cuda"
    names = [f.name for f in labeller.extractor.features]
    total = sum(c for u in units for _, c in u) + initial if total is None else total
    workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlgan-latents")
    queued: deque = deque()

    def enqueue(i: int) -> None:
        if i < len(units):
            queued.append(workers.submit(_unit_latents, seed, units[i], labeller.generator, on_gpu))

    def launch(i: int) -> _Launched:
        z = queued.popleft().result()
        enqueue(i + max(1, prefetch))
        z_device = z.to(device, non_blocking=True)
        features_device = labeller.label(z_device)
        event = None
        if on_gpu:
            features_host = torch.empty(features_device.shape, dtype=features_device.dtype, pin_memory=True)
            features_host.copy_(features_device, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            features_host = features_device.to("cpu")
        return _Launched(units[i], z, z_device, features_device, features_host, event, names)

    pending: _Launched | None = None
    with tqdm(total=total, initial=initial, unit="img", desc="sample+label", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            for i in range(min(max(1, prefetch), len(units))):
                enqueue(i)
            for i in range(len(units)):
                launched = launch(i)
                if pending is not None:
                    done, pending = pending, None
                    unit = done.finish()
                    consume(unit)
                    bar.update(unit.z.shape[0])
                pending = launched
            if pending is not None:
                done, pending = pending, None
                unit = done.finish()
                consume(unit)
                bar.update(unit.z.shape[0])
        except BaseException:
            if pending is not None:  # labelled before the failure: keep it
                done, pending = pending, None
                consume(done.finish())
            raise
        finally:
            for future in queued:
                future.cancel()
            workers.shutdown(wait=True, cancel_futures=True)


def run_samples(
    generator: Generator,
    extractor: Extractor,
    n: int,
    seed: int,
    folder: str | Path,
    batch_size: int | None = None,
    shard_size: int = SHARD_SIZE,
    progress: bool = True,
    dtype: str = "float32",
    compile: bool = False,
) -> Manifest:
    """Sample, render and label ``n`` latents of run ``seed`` into ``folder``, resuming finished shards.

    ``batch_size`` (default: chosen for the device), ``dtype`` and ``compile``
    are passed to the Labeller (fused.py). Raises TlganError for bad
    parameters, or when ``folder`` holds samples of another generator,
    extractor, seed, shard size or dtype. KeyboardInterrupt leaves every
    finished shard in place.
    """
    check_sample_count(n)
    check_seed(seed)
    labeller = Labeller(generator, extractor, LabelOptions(batch_size, dtype, compile))
    folder = SampleFolder(folder)
    manifest = Manifest(generator.identity, extractor.identity, generator.latent_dim,
                        [asdict(f) for f in extractor.features], seed, n, shard_size, dtype)
    prepare_folder(folder, manifest)
    todo = [(s, c) for s, c in shard_ranges(n, shard_size) if not folder.exists(shard_name(s, c))]

    def write(unit: LabelledUnit) -> None:
        for start, lo, hi in unit.spans:
            write_shard(folder, start, unit.z[lo:hi], unit.features[lo:hi])

    units = group_ranges(todo, labeller.options.batch_size)
    try:
        label_ranges(labeller, seed, units, write, progress=progress, total=n, initial=n - sum(c for _, c in todo))
    finally:
        labeller.close()
    return manifest


def iter_shards(folder: str | Path, n: int | None = None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (start, z (B, D), features (B, F)) for the shards covering the first ``n`` samples (all by default)."""
    folder = SampleFolder(folder)
    manifest = read_manifest(folder)
    n = manifest.n if n is None else n
    if n > manifest.n:
        raise TlganError(f"{folder} holds {manifest.n} samples, {n} asked for")
    for start, count in shard_ranges(n, manifest.shard_size):
        z, f = read_shard(folder, manifest, start, count)
        yield start, z, f


def load_samples(folder: str | Path) -> tuple[Manifest, torch.Tensor, torch.Tensor]:
    """All samples of a folder in memory: (manifest, z (N, D), features (N, F))."""
    manifest = read_manifest(folder)
    parts = list(iter_shards(folder))
    return manifest, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


__all__ = ["Manifest", "run_samples", "prepare_folder", "write_shard", "read_shard", "shard_name", "iter_shards", "load_samples", "label", "label_ranges",
           "group_ranges", "shard_ranges", "set_cpu_threads", "LabelledUnit"]
