"""Sampling on a Ray cluster: the local pipeline's shards, rendered and labelled by one actor per CPU or GPU slot.

The driver (the machine running ``tlgan build --ray ADDRESS``) splits the
seeds into the same shards as the local pipeline (``shard_ranges``, grouped
into units of at least one batch by ``group_ranges``) and hands each unit to
an actor. Each actor loads the generator and extractor once, then labels its
units with the local pipeline's own code (``label_ranges``), so a shard's
readings are the same bits as in a local run on the same device type and
CPU. Per shard it returns a small summary (for a linear fit: the shard's
normal-equation sums, see ``tlgan.axes.distributed``) and, when samples are
stored, writes the shard into the sample folder, which every node must reach
(a shared path or an fsspec URI, see folder.py). The driver takes the
summaries in shard order, whatever order they finish in.

Faults: an actor whose process dies is restarted by Ray and its unit retried
(``max_restarts``/``max_task_retries``); the result is unchanged because a
shard depends only on (seed, start, count). When an actor is gone for good
its work goes to the others. An interrupted driver leaves every finished
shard in the folder; rerunning resumes: finished shards are read back (by the
actors, in parallel) instead of rendered again.

What the cluster must have: the same Python and Ray versions as the driver
(Ray's own rule), torch and tlgan's dependencies on every node, and tlgan
itself, either installed there or shipped from the driver with ``ship_code``
(``--ray-ship``: Ray's runtime environment uploads this tlgan package, so
workers run exactly the driver's code). Model files named by path must exist
at that path on every node. A missing piece is reported in one line before
any work starts.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from tlgan.errors import TlganError

from .folder import SampleFolder
from .fused import AUTO_BATCH, DEFAULT_BATCH, Labeller, LabelOptions, cpu_budget
from .pipeline import (
    LabelledUnit,
    Manifest,
    check_sample_count,
    group_ranges,
    label_ranges,
    prepare_folder,
    read_manifest,
    read_shard,
    shard_name,
    shard_ranges,
    write_shard,
)

MAX_RESTARTS = 3  # per actor: Ray restarts a dead actor this many times and retries its queued work
IN_FLIGHT = 2  # units queued per actor, so that the next is ready when one finishes
PING_EVERY, PING_LATE = 1.0, 10.0  # seconds: how often actors are pinged, and when a silent one counts as down
START_TIMEOUT = 600.0  # seconds for the actors to load their models


def _ray():
    try:
        import ray
    except ImportError:
        raise TlganError("--ray needs Ray: pip install 'tlgan[ray]'") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when a HOST:PORT address does not answer."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise TlganError(f"Ray address must be HOST:PORT, 'auto', 'local' or ray://HOST:PORT, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise TlganError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); "
                         "start one with `ray start --head` or use --ray local") from None


def _probe(module: str) -> tuple[str, str | None, str | None]:
    """(host, version of its top package, error) of importing ``module`` on a worker. Sent by value, so it runs without tlgan."""
    import importlib
    import socket as _socket

    import sys as _sys

    try:
        importlib.import_module(module)
        top = _sys.modules[module.split(".")[0]]
        return _socket.gethostname(), getattr(top, "__version__", "?"), None
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        return _socket.gethostname(), None, f"{type(exc).__name__}: {exc}"


def _by_value(fn: Callable) -> Callable:
    """A copy of ``fn`` that cloudpickle sends by value (it pickles module-level functions by reference)."""
    import types

    copy = types.FunctionType(fn.__code__, {"__builtins__": __builtins__}, fn.__name__, fn.__defaults__)
    copy.__module__ = "__main__"
    copy.__qualname__ = f"<by value>.{fn.__name__}"
    return copy


def error_line(exc: BaseException) -> str:
    """One line for an exception raised on the cluster: the worker's own message, not Ray's traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        return error_line(cause)
    text = str(exc).strip().splitlines()
    if isinstance(exc, TlganError) and text:
        return text[0]
    last = next((line.strip() for line in reversed(text) if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {last}" if not last.startswith(type(exc).__name__) else last


class Cluster:
    """A connection to a Ray cluster, checked to run tlgan on every node; ``close()`` disconnects.

    address: HOST:PORT of a running head node, 'auto' (the cluster this machine
    belongs to), ray://HOST:PORT (Ray client), or 'local' (start a cluster here
    with this machine's CPUs, or ``local_cpus`` logical ones, shut down on close). ship_code uploads this
    tlgan package to the workers (Ray runtime environment ``py_modules``).
    """

    def __init__(self, address: str, ship_code: bool = False, local_cpus: int | None = None) -> None:
        ray = _ray()
        self.address, self.ray = address, ray
        if address != "local" and address != "auto" and not address.startswith("ray://"):
            _check_reachable(address)
        package = Path(__file__).resolve().parents[1]  # this tlgan package
        runtime_env = {"py_modules": [str(package)]} if ship_code else None
        kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False, "runtime_env": runtime_env,
                                  "configure_logging": True}
        if ray.is_initialized():
            raise TlganError("Ray is already initialised in this process")
        try:
            if address == "local":
                ray.init(num_cpus=local_cpus or cpu_budget(), include_dashboard=False, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - Ray raises many kinds (and SystemExit on timeouts)
            raise TlganError(f"cannot connect to the Ray cluster at {address}: {error_line(exc)}") from None
        try:
            # tlgan is imported, as this module's parent package
            self.check_module("tlgan.sampling.distributed", getattr(sys.modules["tlgan"], "__version__", "?"))
        except BaseException:
            self.close()
            raise

    def nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check_module(self, module: str, version: str | None = None, timeout: float = 300.0) -> None:
        """Import ``module`` on every live node; TlganError naming the first node where it fails or differs."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(_by_value(_probe))
        refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(module) for n in self.nodes()]
        try:
            answers = self.ray.get(refs, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - the worker could not even start
            raise TlganError(f"the Ray workers at {self.address} could not run a task: {error_line(exc)}") from None
        for host, found, error in answers:
            if error is not None:
                raise TlganError(f"{module} is not importable on Ray node {host} ({error}); install tlgan on every "
                                 "node or pass --ray-ship to send this one")
            if version is not None and found != version:
                raise TlganError(f"Ray node {host} has tlgan {found}, the driver {version}; install the same "
                                 "version or pass --ray-ship")

    def resources(self) -> dict[str, float]:
        return dict(self.ray.cluster_resources())

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the actor -------------------------------------------------------------------------------------------------------
class ShardWorker:
    """One slot's models, loaded once: labels units of shards, reads stored shards, reads faces for evaluation.

    A summary function ``summarize(start, z (B, D), readings (B, F))`` turns each
    shard into what the driver needs; it gets the CPU copies, or the device
    tensors when it has ``on_device = True``.
    """

    def __init__(self, generator: str, extractor: str, device: str, options: LabelOptions, threads: int) -> None:
        from tlgan.models.extractors import load_extractor
        from tlgan.models.generators import load_generator

        torch.set_num_threads(threads)
        self.error: str | None = None
        try:
            self.generator = load_generator(generator, device)
            self.extractor = load_extractor(extractor, device)
            self.labeller = Labeller(self.generator, self.extractor, options)
        except Exception as exc:  # noqa: BLE001 - reported by describe(): an actor that raises here is restarted
            self.error = error_line(exc)

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error, "host": socket.gethostname()}
        return {"generator": self.generator.identity, "extractor": self.extractor.identity,
                "latent_dim": self.generator.latent_dim, "features": [asdict(f) for f in self.extractor.features],
                "device": str(self.labeller.device), "batch_size": self.labeller.options.batch_size,
                "host": socket.gethostname(), "pid": os.getpid()}

    def ping(self) -> int:
        return os.getpid()

    def label(self, seed: int, shards: list[tuple[int, int]], folder: str | None,
              summarize: Callable | None) -> list[tuple[int, int, Any]]:
        """Render and label one unit of shards (as the local pipeline does); write them to ``folder`` if given."""
        store = SampleFolder(folder) if folder else None
        out: list[tuple[int, int, Any]] = []

        def consume(unit: LabelledUnit) -> None:
            for start, lo, hi in unit.spans:
                if store is not None:
                    write_shard(store, start, unit.z[lo:hi], unit.features[lo:hi])
                summary = None
                if summarize is not None:
                    on_device = getattr(summarize, "on_device", False)
                    z, f = (unit.z_device, unit.features_device) if on_device else (unit.z, unit.features)
                    summary = summarize(start, z[lo:hi], f[lo:hi])
                out.append((start, hi - lo, summary))

        label_ranges(self.labeller, seed, [shards], consume, progress=False)
        return out

    def read(self, folder: str, shards: list[tuple[int, int]], summarize: Callable) -> list[tuple[int, int, Any]]:
        """Summaries of shards already stored in ``folder`` (a resumed run)."""
        store = SampleFolder(folder)
        manifest = read_manifest(store)
        out = []
        for start, count in shards:
            z, f = read_shard(store, manifest, start, count)
            if getattr(summarize, "on_device", False):
                z, f = z.to(self.labeller.device), f.to(self.labeller.device)
            out.append((start, count, summarize(start, z, f)))
        return out

    def read_faces(self, z: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Readings (N, F) float32 on the CPU of latents (N, D), as ``sweeps.read_faces`` gives them locally."""
        from .sweeps import read_faces

        return read_faces(self.generator, self.extractor, z, batch_size)

    def close(self) -> None:
        if self.error is None:
            self.labeller.close()


# ---- the driver --------------------------------------------------------------------------------------------------------
@dataclass
class _Item:
    """One piece of work: an actor method and its arguments, with the samples it stands for."""

    key: int
    method: str
    args: tuple
    samples: int
    counts: bool = True  # whether it advances the progress bar (resumed shards do not)
    tries: int = field(default=0)


class WorkerPool:
    """Actors (one per GPU, or per CPU when the work runs on CPUs) holding the same models, fed from one queue.

    device: 'auto' (GPUs if the cluster has any, else CPUs), 'cpu', or 'cuda'.
    workers: at most this many actors (default: every slot).
    """

    def __init__(self, cluster: Cluster, generator: str, extractor: str, device: str = "auto",
                 options: LabelOptions | None = None, workers: int | None = None) -> None:
        self.cluster, ray = cluster, cluster.ray
        resources = cluster.resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        kind = device.split(":")[0]
        if kind == "auto":
            kind = "cuda" if gpus else "cpu"
        if kind not in ("cpu", "cuda"):
            raise TlganError(f"device '{device}' cannot be used on a Ray cluster; use auto, cpu or cuda")
        if kind == "cuda" and not gpus:
            raise TlganError(f"the Ray cluster at {cluster.address} has no GPUs ({cpus} CPUs); "
                             "use --device cpu or add GPU nodes")
        slots = gpus if kind == "cuda" else cpus
        if slots < 1:
            raise TlganError(f"the Ray cluster at {cluster.address} has no free CPU slots")
        count = min(slots, workers) if workers else slots
        self.device = kind
        options = options or LabelOptions()
        if options.batch_size is None:
            options = LabelOptions(AUTO_BATCH.get(kind, DEFAULT_BATCH), options.dtype, options.compile,
                                   options.compile_mode, options.workers)
        self.options = options
        remote = ray.remote(num_cpus=1, num_gpus=1 if kind == "cuda" else 0, max_restarts=MAX_RESTARTS,
                            max_task_retries=MAX_RESTARTS, concurrency_groups={"ping": 1})(ShardWorker)
        self.actors = [remote.remote(generator, extractor, kind, options, 1) for _ in range(count)]
        try:
            infos = ray.get([a.describe.remote() for a in self.actors], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise TlganError(f"{count} Ray workers did not start within {START_TIMEOUT:.0f} s "
                             f"(cluster resources: {resources})") from None
        except Exception as exc:  # noqa: BLE001 - a model that fails to load on a worker
            self.close()
            raise TlganError(f"Ray workers could not load the models: {error_line(exc)}") from None
        failed = next((info for info in infos if "error" in info), None)
        if failed is not None:
            self.close()
            raise TlganError(f"Ray worker on {failed['host']} could not load the models: {failed['error']}")
        first = {k: infos[0][k] for k in ("generator", "extractor", "latent_dim", "features")}
        for info in infos[1:]:
            if {k: info[k] for k in first} != first:
                self.close()
                raise TlganError(f"Ray workers on {infos[0]['host']} and {info['host']} loaded different models "
                                 f"({first['generator']} vs {info['generator']})")
        self.info = infos[0]
        self.alive: set[int] = set(range(count))
        self._pings: dict[int, tuple[Any, float]] = {}
        self._last_ping = 0.0

    @property
    def latent_dim(self) -> int:
        return int(self.info["latent_dim"])

    def manifest(self, seed: int, n: int, shard_size: int) -> Manifest:
        return Manifest(self.info["generator"], self.info["extractor"], self.latent_dim, self.info["features"], seed,
                        n, shard_size, self.options.dtype)

    # -- running queued items on the actors --
    def _watch(self, bar: tqdm) -> None:
        """Ping every actor now and then; the bar shows how many answered lately."""
        ray, now = self.cluster.ray, time.monotonic()
        if self._pings:
            refs = {ref: i for i, (ref, _) in self._pings.items()}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
            for ref in ready:
                i = refs[ref]
                try:
                    ray.get(ref)
                    self.alive.add(i)
                except Exception:  # noqa: BLE001 - a dead actor's ping fails
                    self.alive.discard(i)
                del self._pings[i]
            for i, (_, sent) in list(self._pings.items()):
                if now - sent > PING_LATE:
                    self.alive.discard(i)
        refresh = now - self._last_ping >= PING_EVERY
        if refresh:  # also redraws the bar, so that rate and workers stay current during long shards
            self._last_ping = now
            for i, actor in enumerate(self.actors):
                if i not in self._pings and actor is not None:
                    self._pings[i] = (actor.ping.options(concurrency_group="ping").remote(), now)
        bar.set_postfix_str(f"workers alive {len(self.alive)}/{sum(a is not None for a in self.actors)}",
                            refresh=refresh)

    def run(self, items: Sequence[_Item], on_result: Callable[[_Item, Any], None], bar: tqdm) -> None:
        """Run every item on some actor, at most IN_FLIGHT per actor, calling ``on_result`` as each finishes."""
        ray = self.cluster.ray
        queue = list(items)[::-1]  # popped from the end: first items first
        running: dict[Any, tuple[_Item, int]] = {}
        load = [0] * len(self.actors)
        while queue or running:
            for i, actor in enumerate(self.actors):
                while actor is not None and queue and load[i] < IN_FLIGHT:
                    item = queue.pop()
                    running[getattr(actor, item.method).remote(*item.args)] = (item, i)
                    load[i] += 1
            if not any(a is not None for a in self.actors):
                raise TlganError("every Ray worker died; see the cluster's logs (ray logs) for why")
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            self._watch(bar)
            for ref in ready:
                item, i = running.pop(ref)
                load[i] -= 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the work itself failed: no point retrying
                    raise TlganError(error_line(exc)) from None
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError):
                    # Ray's own restarts and retries are used up: give the work to the others.
                    self.actors[i] = None
                    self.alive.discard(i)
                    item.tries += 1
                    if item.tries > MAX_RESTARTS:
                        raise TlganError(f"Ray workers died {item.tries} times on the same work; see `ray logs`") from None
                    queue.append(item)
                    continue
                except ray.exceptions.RayError as exc:  # out of memory, a runtime environment that fails, ...
                    raise TlganError(f"Ray: {error_line(exc)}") from None
                on_result(item, result)
                if item.counts:
                    bar.update(item.samples)
                    self._watch(bar)

    def label_shards(self, n: int, seed: int, shard_size: int, folder: SampleFolder | None,
                     summarize: Callable | None, consume: Callable[[int, int, Any], None],
                     progress: bool = True) -> None:
        """Label samples [0, n) of run ``seed`` in the local pipeline's shards; ``consume(start, count, summary)``
        in shard order. With ``folder`` (prepared by the caller), shards are written there, and shards already
        there are not labelled again but read back for their summaries (or skipped without ``summarize``)."""
        check_sample_count(n)
        ranges = shard_ranges(n, shard_size)
        done = {r for r in ranges if folder is not None and folder.exists(shard_name(*r))}
        todo = [r for r in ranges if r not in done]
        where = folder.location if folder is not None else None
        items = [_Item(unit[0][0], "label", (seed, unit, where, summarize), sum(c for _, c in unit))
                 for unit in group_ranges(todo, self.options.batch_size)]
        if summarize is not None:
            per_read = max(1, len(done) // (4 * len(self.actors)) or 1)
            done_sorted = sorted(done)
            for i in range(0, len(done_sorted), per_read):
                group = done_sorted[i: i + per_read]
                items.append(_Item(group[0][0], "read", (where, group, summarize), sum(c for _, c in group), False))
        else:
            for start, count in sorted(done):
                consume(start, count, None)
        items.sort(key=lambda it: it.key)  # in shard order, so results can be taken as they come
        order = [start for start, _ in ranges if summarize is not None or (start, _) not in done]
        results: dict[int, tuple[int, Any]] = {}
        next_index = 0

        def on_result(item: _Item, shards: list[tuple[int, int, Any]]) -> None:
            nonlocal next_index
            for start, count, summary in shards:
                results[start] = (count, summary)
            while next_index < len(order) and order[next_index] in results:
                count, summary = results.pop(order[next_index])
                consume(order[next_index], count, summary)
                next_index += 1

        with tqdm(total=n, initial=sum(c for _, c in done), unit="img", desc="sample+label (ray)",
                  disable=not progress, dynamic_ncols=True) as bar:
            self.run(items, on_result, bar)
        if next_index != len(order):
            raise TlganError(f"the Ray run returned {next_index} of {len(order)} shards")

    def read_faces(self, z: torch.Tensor, batch_size: int, progress: bool = False) -> torch.Tensor:
        """Readings (N, F) float32 on the CPU of latents (N, D), in the same batches of ``batch_size`` as
        ``sweeps.read_faces``, spread over the actors."""
        n = z.shape[0]
        per = batch_size * max(1, -(-n // (batch_size * 4 * len(self.actors))))
        chunks = [(s, min(per, n - s)) for s in range(0, n, per)]
        items = [_Item(s, "read_faces", (z[s: s + c].contiguous(), batch_size), c) for s, c in chunks]
        parts: dict[int, torch.Tensor] = {}
        with tqdm(total=n, unit="img", desc="evaluate (ray)", disable=not progress, dynamic_ncols=True) as bar:
            self.run(items, lambda item, out: parts.__setitem__(item.key, out), bar)
        if not parts:
            return torch.empty(0, len(self.info["features"]))
        return torch.cat([parts[s] for s, _ in chunks])

    def close(self) -> None:
        for actor in getattr(self, "actors", []):
            if actor is not None:
                try:
                    self.cluster.ray.kill(actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.actors = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_on_cluster(pool: WorkerPool, n: int, seed: int, folder: str | Path, shard_size: int,
                      progress: bool = True) -> Manifest:
    """``run_samples`` on a cluster: the same sample folder (manifest and shards), written by the actors."""
    store = SampleFolder(folder)
    manifest = pool.manifest(seed, n, shard_size)
    prepare_folder(store, manifest)
    pool.label_shards(n, seed, shard_size, store, None, lambda *_: None, progress)
    return manifest


__all__ = ["Cluster", "WorkerPool", "ShardWorker", "sample_on_cluster", "error_line"]
