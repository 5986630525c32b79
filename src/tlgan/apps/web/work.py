"""Where the web app's model work runs: a few threads of its own, with a bounded queue.

FastAPI runs plain ``def`` handlers on one shared pool of ~40 threads, so a
burst of heavy requests (long edit lists replayed under many locks, large
images) once took every thread and oversubscribed the CPU: cheap endpoints
such as ``GET /api/model`` then waited minutes. Here the heavy handlers are
``async`` and hand their work to a WorkPool: ``workers`` threads run the
replay and the encoding (single-threaded NumPy/zlib/Pillow work; the
generator runs on the BatchRenderer's one thread, with the torch thread count
``tlgan serve`` sets), at most ``max_pending`` requests are admitted, and any
more are refused at once with ``Busy`` (HTTP 503 with Retry-After). Steps run
earliest-admitted first; a request whose first step would start more than
``max_wait_s`` after it was admitted is refused too, so every request ends, served or refused, in bounded time, and
the event loop stays free for the cheap endpoints.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import itertools
import queue
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, TypeVar

from tlgan.errors import TlganError

T = TypeVar("T")


class Busy(TlganError):
    """The server has more work queued than it accepts; ``retry_after`` is a suggested wait in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkPool:
    """Admits a bounded number of requests and runs their blocking steps on ``workers`` threads of its own.

    A request takes a slot (``async with pool.slot():``) for its whole life and
    runs each blocking step with ``await pool.call(fn, ...)``; while it waits
    for the BatchRenderer it holds no worker, so concurrent requests still
    share the generator's batches.

    Args:
        workers: threads running replay and encoding at once (default 2: on a
            small CPU more only compete with the renderer for cores).
        max_pending: requests admitted at once (running or waiting); more get Busy.
        max_wait_s: a request whose first step would start later than this
            after it was admitted is refused (Busy); a started one is finished,
            before newer ones. So every request ends, served or refused, in bounded time.
    """

    def __init__(self, workers: int = 2, max_pending: int | None = None, max_wait_s: float = 30.0) -> None:
        if workers < 1:
            raise TlganError(f"workers must be positive, got {workers}")
        self.workers = workers
        self.max_pending = 64 if max_pending is None else max_pending
        self.max_wait_s = max_wait_s
        # earliest-admitted first: a request's later steps (encoding after its replay) go ahead of newer
        # requests' first steps, so requests finish one by one instead of all waiting behind every replay
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"tlgan-work-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()
        self._lock = threading.Lock()
        self._admitted = 0
        self._mean_s = 0.05         # running mean of a request's duration, for Retry-After
        self._started: set[float] = set()   # requests (by admission time) that have run a step
        self.refused = 0

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds until the requests admitted now are likely done (at least 1)."""
        return max(1, math.ceil(self._admitted * self._mean_s / self.workers))

    def _busy(self, why: str) -> Busy:
        self.refused += 1
        return Busy(f"the server is busy ({why}); retry in a moment", self.retry_after())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Admit one request for the duration of the block (raises Busy at once when full); yields its start."""
        with self._lock:
            if self._admitted >= self.max_pending:
                raise self._busy(f"{self._admitted} requests in progress")
            self._admitted += 1
        start = time.monotonic()
        while start in self._started:   # the slot's start names the request: keep it unique
            start = math.nextafter(start, math.inf)
        try:
            yield start
        finally:
            self._started.discard(start)
            with self._lock:
                self._admitted -= 1
                self._mean_s = 0.8 * self._mean_s + 0.2 * (time.monotonic() - start)

    def _work(self) -> None:
        while True:
            admitted_at, _, first, fn, args, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            waited = time.monotonic() - admitted_at
            try:
                if first and waited > self.max_wait_s:  # never started: refuse; a started request is finished
                    raise self._busy(f"this request waited {waited:.0f} s")
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    async def call(self, admitted_at: float, fn: Callable[..., T], *args: Any, first: bool | None = None) -> T:
        """``fn(*args)`` on a worker thread, for a request admitted at ``admitted_at`` (its slot's start).

        Requests admitted earlier run first. ``first`` (default: whether this request has run a step
        yet) marks a request's first step, the one refused when it comes later than ``max_wait_s``.
        """
        if first is None:
            first = admitted_at not in self._started
            self._started.add(admitted_at)
        future: Future = Future()
        self._queue.put((admitted_at, next(self._seq), first, fn, args, future))
        return await asyncio.wrap_future(future)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Admit a request and run ``fn(*args)`` on a worker thread (one-step requests)."""
        async with self.slot() as start:
            return await self.call(start, fn, *args)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put((math.inf, next(self._seq), False, None, (), None))
        for thread in self._threads:
            thread.join(timeout=10)
