"""One worker thread that owns the models: concurrent render requests are collected into batches.

Every request hands in its own latents and gets back exactly its own pixels
(and readings), whatever else shared the batch, so concurrent users never see
each other's state. Only this thread calls the generator and the extractor,
so no model is ever run from two threads at once; on a GPU, collecting
requests into one batch is what makes many users cheap.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator, check_latent


@dataclass
class Frames:
    """What one request gets back: ``pixels`` (N, H, W, 3) uint8 and ``readings`` (N, F) float32 or None."""

    pixels: np.ndarray
    readings: np.ndarray | None


@dataclass
class _Job:
    latents: torch.Tensor  # (N, D) float32 on CPU
    read: bool
    future: Future


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8, rounded as ``imaging.to_pil`` rounds."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu().numpy()


class BatchRenderer:
    """Renders latents on a worker thread, batching requests that arrive while it is busy.

    Args:
        generator: the Generator (its parameters' device is used).
        extractor: optional Extractor for readings, on the same device.
        max_batch: most latents collected into one batch (a job is never split).
        chunk: the fixed batch shape the models run on (see the module
            docstring); default 1 on CPU, 16 on other devices.
        wait_s: how long to wait for more requests before running a batch;
            default 0 on CPU (requests that queued during the previous batch
            still join it) and 2 ms on a GPU.
    """

    def __init__(self, generator: Generator, extractor: Extractor | None = None, max_batch: int = 64,
                 chunk: int | None = None, wait_s: float | None = None) -> None:
        self.generator = generator
        self.extractor = extractor
        self.device = next(generator.parameters(), torch.empty(0)).device
        on_cpu = self.device.type == "cpu"
        self.max_batch = max_batch
        self.chunk = (1 if on_cpu else 16) if chunk is None else chunk
        self.wait_s = (0.0 if on_cpu else 0.002) if wait_s is None else wait_s
        self.batches = 0          # batches collected
        self.largest_batch = 0    # most latents in one batch (shows batching happened)
        self.model_calls = 0      # generator calls (one per chunk)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tlgan-renderer", daemon=True)
        self._thread.start()

    def submit(self, latents: torch.Tensor, read: bool = False) -> Future:
        """Queue latents (N, D); the Future resolves to Frames (or raises what rendering raised)."""
        if self._closed:
            raise TlganError("renderer is closed")
        if read and self.extractor is None:
            raise TlganError("this server has no feature extractor, so it gives no readings")
        check_latent(latents, self.generator.latent_dim)  # a bad latent fails its own request, not the batch
        future: Future = Future()
        self._queue.put(_Job(latents.detach().to("cpu", torch.float32), read, future))
        return future

    def render(self, latents: torch.Tensor, read: bool = False, timeout: float = 60.0) -> Frames:
        """Blocking ``submit``."""
        return self.submit(latents, read).result(timeout)

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    # ---- worker ----------------------------------------------------------------
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count, stop = [first], len(first.latents), False
        deadline = time.monotonic() + self.wait_s
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
            count += len(job.latents)
        return jobs, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if jobs:
                self._render(jobs)

    def _chunked(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """``model`` applied to ``inputs`` in chunks of exactly ``self.chunk`` rows (the last one zero-padded)."""
        outputs = []
        for start in range(0, len(inputs), self.chunk):
            part = inputs[start: start + self.chunk]
            if len(part) < self.chunk:
                part = torch.cat([part, part.new_zeros((self.chunk - len(part), *part.shape[1:]))])
            outputs.append(model(part)[: len(inputs) - start])
            self.model_calls += model is self.generator
        return torch.cat(outputs)

    @torch.inference_mode()
    def _render(self, jobs: list[_Job]) -> None:
        try:
            z = torch.cat([j.latents for j in jobs]).to(self.device)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(z))
            images = self._chunked(self.generator, z)
            pixels = to_pixels(images)
            readings = None
            reading_jobs = [j.read for j in jobs]
            if any(reading_jobs):
                sizes = torch.tensor([len(j.latents) for j in jobs])
                wanted = torch.repeat_interleave(torch.tensor(reading_jobs), sizes).to(self.device)
                readings = np.zeros((len(z), len(self.extractor.features)), dtype=np.float32)
                readings[wanted.cpu().numpy()] = self._chunked(self.extractor, images[wanted]).float().cpu().numpy()
        except Exception as exc:  # keep the worker alive; only the request that caused the failure should get it
            if len(jobs) > 1:
                for job in jobs:
                    self._render([job])
            else:
                jobs[0].future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            stop = start + len(job.latents)
            job.future.set_result(Frames(pixels[start:stop], readings[start:stop] if job.read else None))
            start = stop
