"""Helpers shared by the speed benchmarks: timing, device set-up, honest reporting of the machine's state."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# Measure the checkout these scripts live in, not whichever tlgan happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tlgan.devices import resolve_device
from tlgan.sampling.fused import set_cpu_threads


def setup(device: str, threads: int | None) -> torch.device:
    """Resolve the device and set CPU threads; print what the run is on."""
    dev = resolve_device(device)
    used = set_cpu_threads(threads)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        torch.backends.cudnn.benchmark = True
    else:
        name = platform.processor() or platform.machine()
    print(f"# device {dev} ({name}), torch {torch.__version__}, {used} CPU threads, {machine_load()}")
    return dev


def machine_load() -> str:
    """The 1-minute load average against the core count: other work on a shared machine skews timings."""
    try:
        one, _, _ = os.getloadavg()
        return f"load average {one:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call of ``fn``, with the device drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def summary(rates: list[float]) -> str:
    return f"best {max(rates):,.0f}  median {statistics.median(rates):,.0f}"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)



SRC = Path(__file__).resolve().parents[1] / "src"


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run ``python -m tlgan ARGS`` on this checkout: (wall seconds, peak resident MiB, stderr).

    The peak is the child's own (from wait4), so start-up, imports and model
    loading count, as for a user running the command. Linux/macOS only.
    """
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        actions = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, log.fileno(), 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(sys.executable, [sys.executable, "-m", "tlgan", *args], env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        err = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tlgan {' '.join(args)} failed:\n{err}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return wall, peak, err


@contextmanager
def served(device: str, timeout: float = 120) -> Iterator[tuple[str, dict]]:
    """The web app on the default model in a child process (``web_latency.py --serve``) on a free port:
    yields (base URL, its /api/model answer) once it answers, and stops it afterwards."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parent
    server = subprocess.Popen([sys.executable, str(root / "web_latency.py"), "--serve", str(port), "--device", device],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(root.parent / "src")})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = httpx.get(url + "/api/model", timeout=2).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"server did not start:\n{server.stdout.read() if server.poll() is not None else ''}")
                time.sleep(0.3)
        yield url, info
    finally:
        server.terminate()
        server.wait(timeout=20)
