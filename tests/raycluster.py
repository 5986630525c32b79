"""A real Ray cluster for tests and benchmarks: a head node and worker nodes started with `ray start`, on this machine.

Each node is a `ray start --block` process in its own process group, with
every port it binds chosen free beforehand (so that two nodes on one machine,
or a cluster of another test run, do not clash), and its temporary files in a
folder of the caller's. ``stop()`` ends exactly those process groups.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import shutil
import secrets
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]


class LocalCluster:
    """``LocalCluster(tmp, cpus=[1, 1])``: a head with cpus[0] CPUs and one worker node per further entry."""

    def __init__(self, temp_dir: str | Path, cpus: list[int], timeout: float = 120.0) -> None:
        self.temp_dir = Path(temp_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._short = None
        if len(str(self.temp_dir)) > 40:  # Ray's socket paths below it must stay under 108 bytes
            self._short = Path(tempfile.mkdtemp(prefix="tlray", dir="/tmp"))
            self.temp_dir = self._short
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        # Ray >= 2.5x turns on token authentication once ~/.ray/auth_token exists (a local ray.init() writes it):
        # give this cluster its own token, and ``env`` to every client.
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env.pop("RAY_ADDRESS", None)
        try:
            for i, n in enumerate(cpus):
                args = [RAY, "start", "--block", "--disable-usage-stats", f"--num-cpus={n}", "--num-gpus=0",
                        f"--temp-dir={self.temp_dir}", "--node-ip-address=127.0.0.1", *_node_ports()]
                if i == 0:
                    args += ["--head", f"--port={self.port}", "--include-dashboard=false",
                             f"--dashboard-port={free_port()}"]
                else:
                    args += [f"--address={self.address}"]
                log = self.temp_dir / f"node{i}.log"
                self.logs.append(log)
                with open(log, "w") as out:
                    self.procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                                       start_new_session=True))
                self._wait_nodes(i + 1, timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_nodes(self, count: int, timeout: float) -> None:
        """Wait until node ``count - 1`` says it has started (after registering with the head)."""
        deadline = time.monotonic() + timeout
        proc, log = self.procs[count - 1], self.logs[count - 1]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {log.read_text()[-2000:]}")
            if "Ray runtime started" in log.read_text():
                return
            time.sleep(0.3)
        raise RuntimeError(f"Ray node {count - 1} did not start in {timeout} s: {log.read_text()[-2000:]}")

    def descendants(self) -> dict[int, str]:
        """{pid: command line} of every process started by this cluster's nodes (Ray workers start their own
        sessions, so process groups do not find them; parenthood does)."""
        parent, cmd = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
                cmd[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
        found, frontier = {}, {p.pid for p in self.procs}
        while frontier:
            children = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
            found.update({pid: cmd[pid] for pid in children})
            frontier = children
        return found

    def pids(self, title: str) -> list[int]:
        """This cluster's processes whose command line starts with ``title`` (e.g. 'ray::ShardWorker')."""
        return sorted(pid for pid, cmd in self.descendants().items() if cmd.startswith(title))

    def stop(self) -> None:
        """End the nodes (SIGTERM to each `ray start --block`, which stops its own processes), then their groups."""
        leftovers = self.descendants()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever of this node is left
            except (ProcessLookupError, PermissionError):
                pass
        for pid, cmd in leftovers.items():  # workers the nodes did not take down with them (still the same process)
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") == cmd:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        self.procs = []
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)
