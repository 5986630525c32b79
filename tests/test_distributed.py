"""tlgan build/evaluate --ray on a real Ray cluster: a head node and a second node started with `ray start` on loopback.

The cluster (1 CPU per node, so two workers) is started once for the module
and shut down afterwards. Builds use a small N in small shards and the cheap
extractors, so each takes seconds once the workers have loaded the models.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

pytest.importorskip("ray")
# One cluster for the module; each build is seconds on an idle 2-core machine, but a cluster start and the workers'
# model loading add up to minutes when the machine is busy.
pytestmark = pytest.mark.slow

from raycluster import LocalCluster, free_port  # noqa: E402


TLGAN = shutil.which("tlgan", path=str(Path(sys.executable).parent)) or "tlgan"
N, SHARD, SEED = 1024, 64, 3
BUILD = ["build", "--n", str(N), "--shard-size", str(SHARD), "--seed", str(SEED), "--extractor", "imagestats,emotion"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("ray"), cpus=[1, 1])
    yield c
    c.stop()


def tlgan(*args, env=None, check=True, timeout=600):
    proc = subprocess.run([TLGAN, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_axis_file(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["tlgan"]), {k: f.get_tensor(k) for k in f.keys()}


def assert_same_axis_file(a: Path, b: Path) -> None:
    """Bit-identical tensors, the same header, the same bytes."""
    (ha, ta), (hb, tb) = read_axis_file(a), read_axis_file(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name
    assert ha == hb
    assert a.read_bytes() == b.read_bytes()


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard-*.safetensors"))


@pytest.fixture(scope="module")
def local_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    tlgan(*BUILD, "--samples", str(tmp / "samples"), "--out", str(tmp / "axes.safetensors"))
    return tmp / "axes.safetensors", tmp / "samples"


@pytest.fixture(scope="module")
def ray_build(cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raybuild")
    proc = tlgan(*BUILD, "--samples", str(tmp / "samples"), "--out", str(tmp / "axes.safetensors"),
                 "--ray", cluster.address, env=cluster.env)
    return tmp / "axes.safetensors", tmp / "samples", proc


def test_ray_build_equals_local_build(local_build, ray_build):
    local_axes, local_samples = local_build
    ray_axes, ray_samples, proc = ray_build
    assert "2 Ray worker(s)" in proc.stderr
    assert_same_axis_file(local_axes, ray_axes)
    # the stored samples too, shard for shard
    assert [p.name for p in shard_files(ray_samples)] == [p.name for p in shard_files(local_samples)]
    assert len(shard_files(ray_samples)) == N // SHARD
    for a, b in zip(shard_files(local_samples), shard_files(ray_samples)):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert json.loads((ray_samples / "manifest.json").read_text()) == \
        json.loads((local_samples / "manifest.json").read_text())


def test_ray_samples_folder_is_readable_by_tlgan_fit(local_build, ray_build, tmp_path):
    local_axes, _ = local_build
    _, ray_samples, _ = ray_build
    tlgan("fit", str(ray_samples), "--out", str(tmp_path / "ray-fit.safetensors"))
    # the local build fitted its own folder the same way: same file
    assert_same_axis_file(local_axes, tmp_path / "ray-fit.safetensors")


def test_killed_worker_is_retried_with_the_same_result(cluster, local_build, tmp_path):
    local_axes, _ = local_build
    samples = tmp_path / "samples"
    cmd = [TLGAN, *BUILD, "--samples", str(samples), "--out", str(tmp_path / "axes.safetensors"), "--ray",
           cluster.address]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        deadline = time.monotonic() + 300
        while not shard_files(samples) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = cluster.pids("ray::ShardWorker")
        assert proc.poll() is None and workers, "the build ended before a worker could be killed"
        done_before = len(shard_files(samples))
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        assert done_before < N // SHARD, "every shard was finished before the kill"
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert victim not in cluster.pids("ray::ShardWorker")
    assert_same_axis_file(local_axes, tmp_path / "axes.safetensors")


def test_streaming_ray_build_equals_local_streaming_build(cluster, tmp_path):
    args = [*BUILD[:-2], "--extractor", "imagestats", "--n", "600", "--no-store-samples"]
    tlgan(*args, "--out", str(tmp_path / "local.safetensors"))
    proc = tlgan(*args, "--out", str(tmp_path / "ray.safetensors"), "--ray", cluster.address, env=cluster.env)
    assert "fitted while sampling" in proc.stderr
    assert_same_axis_file(tmp_path / "local.safetensors", tmp_path / "ray.safetensors")
    assert not list(tmp_path.glob("*.samples"))


def test_bad_address_is_one_line_error(tmp_path):
    closed = free_port()
    for address, fragment in ((f"127.0.0.1:{closed}", "cannot reach a Ray cluster"),
                              ("not-an-address", "Ray address must be HOST:PORT")):
        start = time.monotonic()
        proc = tlgan(*BUILD, "--out", str(tmp_path / "a.safetensors"), "--ray", address, check=False)
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
        assert time.monotonic() - start < 60
    assert not (tmp_path / "a.safetensors").exists()


CHECKS = """
import sys
from tlgan.errors import TlganError
from tlgan.sampling.distributed import Cluster, WorkerPool
with Cluster(sys.argv[1]) as c:
    for check in (lambda: c.check_module("tlgan_not_installed_here"),
                  lambda: WorkerPool(c, "digiface", "imagestats", device="cuda"),
                  lambda: WorkerPool(c, "pggan:/nonexistent/g.pkl", "imagestats", device="cpu")):
        try:
            check()
            print("no error")
        except TlganError as exc:
            print(exc)
with Cluster(sys.argv[1], ship_code=True) as c:  # --ray-ship: the workers import the package sent from here
    def where():
        import tlgan.sampling.distributed
        return tlgan.__file__
    print(c.ray.get(c.ray.remote(where).remote()))
"""


def test_missing_package_gpus_and_models_are_one_line_errors_and_ship_sends_the_package(cluster):
    # In a fresh process: Ray reads its authentication settings from the environment once, at import.
    proc = subprocess.run([sys.executable, "-c", CHECKS, cluster.address], capture_output=True, text=True,
                          env=cluster.env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    missing, gpus, load, shipped = proc.stdout.strip().splitlines()
    assert "tlgan_not_installed_here is not importable on Ray node" in missing and "ModuleNotFoundError" in missing
    assert "install tlgan on every node or pass --ray-ship" in missing
    assert "has no GPUs (2 CPUs); use --device cpu" in gpus
    assert "could not load the models: TensorFlow-1 network pickle not found: /nonexistent/g.pkl" in load
    assert "Traceback" not in proc.stderr
    import tlgan

    assert shipped.endswith("tlgan/__init__.py") and "runtime_resources" in shipped
    assert Path(shipped).parent != Path(tlgan.__file__).parent


def test_ray_evaluate_equals_local_evaluate(cluster, tmp_path):
    args = ["evaluate", "--n", "6", "--steps", "3", "--no-locked", "--extractor", "imagestats,emotion"]
    tlgan(*args, "--json", str(tmp_path / "local.json"))
    proc = tlgan(*args, "--json", str(tmp_path / "ray.json"), "--ray", cluster.address, env=cluster.env)
    assert "2 Ray worker(s)" in proc.stderr
    local, ray = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("local", "ray"))
    assert local.keys() == ray.keys()
    assert local["settings"] == ray["settings"] and local["features"] == ray["features"]
    assert len(ray["axes"]) == len(local["axes"]) > 5
    # Same faces, same batches; a worker runs each batch on one thread, the local command on all: the readings
    # agree to float32 rounding (and exactly where the convolutions do not split work by thread).
    a = torch.tensor(local["rescoring"]["values"], dtype=torch.float64)
    b = torch.tensor(ray["rescoring"]["values"], dtype=torch.float64)
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True)
    assert torch.allclose(torch.tensor(local["feature_mean"]), torch.tensor(ray["feature_mean"]), rtol=1e-4)
    # identity drift (on by default for the 64-px generator) is read on the driver: the same figures
    assert local["settings"]["identity"]["faces"] == 6
    for x, y in zip(local["axes"], ray["axes"]):
        assert x["identity"]["not_found"] == y["identity"]["not_found"]
        assert x["identity"]["per_sigma"] == pytest.approx(y["identity"]["per_sigma"], rel=1e-3, abs=1e-4)


def test_interrupted_ray_build_resumes_from_finished_shards(cluster, local_build, tmp_path):
    local_axes, _ = local_build
    samples = tmp_path / "samples"
    args = [*BUILD, "--samples", str(samples), "--out", str(tmp_path / "axes.safetensors"), "--ray", cluster.address]
    proc = subprocess.Popen([TLGAN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cluster.env)
    try:
        deadline = time.monotonic() + 300
        while len(shard_files(samples)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the build ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "finished work is kept" in err
    kept = {p.name: p.stat().st_mtime_ns for p in shard_files(samples)}
    assert 2 <= len(kept) < N // SHARD
    assert not (tmp_path / "axes.safetensors").exists()
    tlgan(*args, env=cluster.env)
    assert_same_axis_file(local_axes, tmp_path / "axes.safetensors")
    # the finished shards were read back, not labelled and written again
    assert all(p.stat().st_mtime_ns == kept[p.name] for p in shard_files(samples) if p.name in kept)
    assert len(shard_files(samples)) == N // SHARD
