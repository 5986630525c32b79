"""``tlgan serve`` (tlgan.web.cli.serve_command): a real server process, and its one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from webtools import KNOBS, web_model

from tlgan.apps.cli.serve import serve_command
from tlgan.errors import TlganError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _start_server(args: list[str]) -> tuple[subprocess.Popen, str, dict]:
    """Run ``tlgan serve ARGS --port 0`` as a user would; wait for it; (process, base URL, /api/model)."""
    proc = subprocess.Popen([sys.executable, "-m", "tlgan", "serve", *args, "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    line = proc.stdout.readline()
    assert line.startswith("tlgan: serving on http://127.0.0.1:"), line
    url = line.split()[3].rstrip("/")
    deadline = time.monotonic() + 30
    while True:
        try:
            return proc, url, httpx.get(url + "/api/model", timeout=5).json()
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
            time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)


def test_serve_command_serves_the_axis_set_on_loopback(tmp_path):
    _, axes = web_model()
    path = tmp_path / "axes.safetensors"
    axes.save(path)
    from webtools import subset_axes

    subset_axes(axes, ["yaw", "warmth"]).save(tmp_path / "pose.safetensors")
    proc, url, info = _start_server(["--axes", str(path), "--axes", str(tmp_path / "pose.safetensors"),
                                     "--extractor", "none"])
    try:
        assert [k["name"] for k in info["knobs"]] == [k[0] for k in KNOBS] and info["extractor"] is None
        assert httpx.post(url + "/api/render", json={"seed": 1, "size": 64}).headers["content-type"] == "image/png"
        assert info["sets"] == [{"name": "axes", "url": "/"}, {"name": "pose", "url": "/sets/pose/"}]
        pose = httpx.get(url + "/sets/pose/api/model").json()
        assert [k["name"] for k in pose["knobs"]] == ["yaw", "warmth"]
        # bound to loopback: other Host names are refused (DNS rebinding)
        assert httpx.get(url + "/api/model", headers={"host": "rebind.example:8000"}).status_code == 403
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_serve_command_errors(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(TlganError, match="cannot serve on 127.0.0.1"):
            serve_command.main(["--port", str(busy.getsockname()[1])], standalone_mode=False)
    finally:
        busy.close()
    with pytest.raises(TlganError, match="axis file not found"):
        serve_command.main(["--axes", str(tmp_path / "missing.safetensors"), "--port", "0"], standalone_mode=False)
    with pytest.raises(TlganError, match="cannot use host"):
        serve_command.main(["--host", "no such host.invalid", "--port", "0"], standalone_mode=False)


def test_serve_with_original_assets_shows_the_original_knobs(tmp_path):
    from test_legacy_pickles import _original_layout

    _original_layout(tmp_path, with_cnn=False)
    proc, url, info = _start_server(["--assets", str(tmp_path)])
    try:
        names = [k["name"] for k in info["knobs"]]
        assert {"Beard", "Skin_Tone", "Age", "Male", "Smiling"} <= set(names) and "No_Beard" not in names
        assert sum(k["shown"] for k in info["knobs"]) == 21 and info["title"] == "TL-GAN (original assets)"
        reply = httpx.post(url + "/api/render", json={"seed": 1, "size": 64, "edits": [
            {"op": "set", "knob": "Age", "value": 1.0, "locks": ["Male"]}]})
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    finally:
        _stop(proc)


def test_serve_on_all_addresses_answers_any_host_name(tmp_path):
    _, axes = web_model()
    path = tmp_path / "axes.safetensors"
    axes.save(path)
    proc, url, _ = _start_server(["--axes", str(path), "--extractor", "none", "--host", "0.0.0.0"])
    try:
        res = httpx.get(url + "/api/model", headers={"host": "my-machine.lan:8000"})
        assert res.status_code == 200 and res.headers["x-content-type-options"] == "nosniff"
    finally:
        _stop(proc)
