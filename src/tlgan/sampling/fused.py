"""Render and label in one pass: latents (B, D) on the device -> readings (B, F) float32, nothing else.

A Labeller fuses a generator and an extractor for the sampling pipeline. It
runs the generator's ``synthesize`` directly (the latents are the pipeline's
own, so the per-call finiteness check, a host round trip on a GPU, is
skipped), optionally under autocast in float16 or bfloat16, and optionally
through ``torch.compile``. Each extractor declares in ``autocast_dtypes`` which
reduced precisions keep its readings within tolerance; the others run in
float32 on float32 images (all three defaults tolerate both; ONet keeps its
dense head in float32 to do so).

Tolerance, measured on 1,000 default faces (CPU autocast), per feature in
units of its spread over the samples: float16 moves readings by at most 0.15
(disgust, a rare class: 0.004 in probability) and 0.003 on average; bfloat16
by at most 0.92 (disgust again: 0.02 in probability; other features under
0.2) and 0.021 on average. Axes fitted on 4,000 faces in bfloat16 are within
cosine 0.9999 of the float32 ones (benchmarks/precision.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Iterator

import torch
import torch.nn.functional as F

from tlgan.errors import TlganError
from tlgan.models.extractors import CombinedExtractor, Extractor
from tlgan.models.generators import Generator

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Batch sizes chosen by device type when none is given. On a CPU, small batches keep each
# image's activations in cache from generator to extractors: 32 ran 2-4x faster than 256
# on a 2-core machine (benchmarks/README.md). On a GPU, large batches fill the device.
AUTO_BATCH = {"cpu": 32, "cuda": 8192}
DEFAULT_BATCH = 256
MAX_BATCH = 1 << 20


_INDUCTOR_DIRS: set[str] = set()   # the cache folders tlgan chose (a user's own choice is never replaced)


def separate_inductor_cache() -> None:
    """Keep torch.compile's CPU kernels apart per ``ATEN_CPU_CAPABILITY`` and torch thread count.

    Inductor's on-disk cache is keyed by neither, yet its CPU kernels are built for both: a
    kernel cached under AVX2 failed to build under ATEN_CPU_CAPABILITY=default ("'at::vec' has
    not been declared"), and one compiled at 2 threads aborted the process when reused at
    OMP_NUM_THREADS=1 (both seen running the suite under these settings after a normal run).
    Call it right before compiling; an explicit TORCHINDUCTOR_CACHE_DIR is left alone.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # inductor writes its default back into the variable on first use: that is not a user's choice
    if current is not None and current not in _INDUCTOR_DIRS and os.path.abspath(current) != default_cache_dir():
        return

    capability = os.environ.get("ATEN_CPU_CAPABILITY") or "native"
    folder = os.path.join(default_cache_dir(), f"tlgan-{capability}-threads{torch.get_num_threads()}")
    _INDUCTOR_DIRS.add(folder)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder


@dataclass(frozen=True)
class LabelOptions:
    """How to run the render-and-label step.

    batch_size: images per forward pass (None: AUTO_BATCH for the device).
    dtype: 'float32', 'float16' or 'bfloat16' (autocast; see the module docstring).
    compile: run the fused step through torch.compile (needs a C++ compiler on CPU).
    compile_mode: torch.compile's mode (None: its default).
    workers: CPU only: batches run this many at a time, each on one thread (None: torch's
        thread count). Independent single-threaded batches keep every core busy on the small
        convolutions these models are made of, and degrade gracefully when another process
        takes a core, where one batch split over all threads stalls at every barrier
        (measured on 2 shared cores: 2 workers x 1 thread kept ~570 samples/s of the bound
        while 1 worker x 2 threads fell from ~1,080 to 60-140).
    """

    batch_size: int | None = None
    dtype: str = "float32"
    compile: bool = False
    compile_mode: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise TlganError(f"dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        if self.batch_size is not None and not 0 < self.batch_size <= MAX_BATCH:
            raise TlganError(f"batch size must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if self.workers is not None and not 0 < self.workers <= 1024:
            raise TlganError(f"workers must be between 1 and 1024, got {self.workers}")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


class Labeller:
    """generator + extractor fused: ``labeller(z)`` maps latents (B, D) on ``device`` to readings (B, F) float32.

    ``label(z)`` runs any number of latents in batches of ``options.batch_size``
    into one preallocated output, queuing all the work on the device without
    waiting for it.
    """

    def __init__(self, generator: Generator, extractor: Extractor, options: LabelOptions | None = None) -> None:
        self.generator, self.extractor = generator, extractor
        self.device = module_device(generator)
        if module_device(extractor) != self.device and any(True for _ in extractor.parameters()):
            raise TlganError(f"generator is on {self.device} but the extractor on {module_device(extractor)}")
        if self.device.type == "cpu":
            tune_cpu_allocator()
        elif self.device.type == "cuda":
            # Batches have one shape (the last is padded when compiled): let cuDNN time its algorithms once.
            torch.backends.cudnn.benchmark = True
        options = options or LabelOptions()
        if options.batch_size is None:
            options = replace(options, batch_size=AUTO_BATCH.get(self.device.type, DEFAULT_BATCH))
        if options.workers is None:
            options = replace(options, workers=torch.get_num_threads() if self.device.type == "cpu" else 1)
        elif self.device.type != "cpu":
            options = replace(options, workers=1)
        self.options = options
        self.dtype = DTYPES[options.dtype]
        self.num_features = len(extractor.features)
        # A plain CombinedExtractor is run part by part, so that each part gets its own precision.
        parts = list(extractor.parts) if type(extractor) is CombinedExtractor else [extractor]
        self._parts = [(p, self.dtype in getattr(p, "autocast_dtypes", ())) for p in parts]
        self._step = self._forward
        self._compiled_size = 0
        self._pool: ThreadPoolExecutor | None = None
        if options.compile:
            if not hasattr(torch, "compile"):
                raise TlganError("this torch has no torch.compile")
            # Fixed shapes: the last, smaller batch is padded up rather than compiled again.
            self._step = torch.compile(self._forward, dynamic=False, mode=options.compile_mode)

    @property
    def reduced(self) -> bool:
        return self.dtype != torch.float32

    def _autocast(self, enabled: bool):
        if not self.reduced:  # no autocast at all: some device types (meta) have none
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        with self._autocast(self.reduced):
            images = self.generator.synthesize(z)
        outputs = []
        for part, reduced_ok in self._parts:
            if self.reduced and reduced_ok:
                with self._autocast(True):
                    outputs.append(part(images).float())
            elif self.reduced:
                with self._autocast(False):
                    outputs.append(part(images.float()).float())
            else:
                outputs.append(part(images).float())
        return torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Readings (B, F) float32 of latents (B, D) already on the device (assumed finite)."""
        if not self.options.compile:
            return self._step(z)
        count = z.shape[0]
        if not self._compiled_size:
            self._compiled_size = count
            separate_inductor_cache()  # the first call compiles, with the thread count it runs at
        if count < self._compiled_size:
            z = F.pad(z, (0, 0, 0, self._compiled_size - count))
        elif count > self._compiled_size:
            raise TlganError(f"compiled for batches of {self._compiled_size}, got {count}")
        return self._step(z)[:count]

    @torch.inference_mode()
    def label(self, z: torch.Tensor) -> torch.Tensor:
        """Readings (N, F) float32 on the device for latents (N, D) on the device, in batches.

        With several CPU workers, torch's thread count is 1 while this runs
        (a process-wide setting, restored on return).
        """
        while True:
            try:
                return self._label(z)
            except torch.OutOfMemoryError:
                # Readings do not depend on the batch size, so a smaller batch is a safe retry;
                # a compiled step is specialised to its batch shape and cannot shrink.
                if self.options.batch_size <= 1 or self.options.compile:
                    raise TlganError(f"out of {self.device.type} memory at batch size {self.options.batch_size}; "
                                     f"try --batch-size {max(1, self.options.batch_size // 2)}") from None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.options = replace(self.options, batch_size=self.options.batch_size // 2)
                warnings.warn(f"out of {self.device.type} memory: batch size lowered to {self.options.batch_size}")

    def _label(self, z: torch.Tensor) -> torch.Tensor:
        n, step = z.shape[0], self.options.batch_size
        out = torch.empty(n, self.num_features, dtype=torch.float32, device=z.device)
        starts = list(range(0, n, step))
        if self.options.workers <= 1 or len(starts) <= 1:
            for b in starts:
                out[b: b + step] = self(z[b: b + step])
            return out
        if self._pool is None:
            # Kept for the Labeller's life: fresh threads would each get a fresh malloc arena,
            # and resident memory would creep up run after run (measured: +250 MiB over 32k samples).
            self._pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="tlgan-label")
        with single_threaded():
            if self.options.compile and not self._compiled_size:
                # Compile once, here, before any worker calls the compiled step (and with the
                # thread count the workers use: compiled CPU kernels are specialised to it).
                out[:step] = self(z[:step])
                starts = starts[1:]
            for b, readings in zip(starts, self._pool.map(lambda b: self(z[b: b + step]), starts)):
                out[b: b + step] = readings
        return out

    def close(self) -> None:
        """Stop the CPU worker threads (also done when the Labeller is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@contextmanager
def single_threaded() -> Iterator[None]:
    """torch intra-op threads set to 1 for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of unmapping it; True if done.

    Batches of activations are megabytes each. By default glibc serves such
    blocks with mmap and returns them on free, so every batch page-faults its
    memory in afresh: on a 2-core machine that doubled ONet's time at batch
    32 (12.6 -> 25.6 ms, measured). Raising the mmap threshold to its maximum
    (32 MiB) and the trim threshold to 1 GiB keeps those pages mapped; peak
    memory is unchanged, since it is bounded by the batch size anyway. A
    no-op where malloc is not glibc's.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = getattr(libc, "mallopt", None)
            gnu = getattr(libc, "gnu_get_libc_version", None)
            if mallopt is not None and gnu is not None:
                m_trim_threshold, m_mmap_threshold = -1, -3
                _ALLOCATOR_TUNED = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
        except OSError:
            pass
    return _ALLOCATOR_TUNED


def cpu_budget() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup (container) CPU quota when there is one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: ``cpu_budget()``; env TLGAN_THREADS overrides) and return the count.

    Oversubscribing a small or shared machine is the costly mistake: OpenMP
    threads that wait for a descheduled peer make tail latencies explode.
    """
    if threads is None:
        env = os.environ.get("TLGAN_THREADS", "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise TlganError(f"TLGAN_THREADS must be a positive integer, got '{env}'") from None
    threads = cpu_budget() if threads is None else threads
    if threads < 1:
        raise TlganError(f"thread count must be positive, got {threads}")
    torch.set_num_threads(threads)
    return threads
