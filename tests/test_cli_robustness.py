"""Failures found by probing the CLI: writes that fail, signals, stale temporaries, permissions, same bytes, headers."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TLGAN = shutil.which("tlgan", path=str(Path(sys.executable).parent)) or "tlgan"


def run(*args: str, cwd: Path | None = None, preexec=None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TLGAN, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, preexec_fn=preexec,
                          check=False)


def one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("digiface", "sample"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- writing fails --------------------------------------------------------------------------------
def test_output_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = run("edit", "--seed", "1", "--out", str(tmp_path / "afile" / "face.png"))
    one_line_error(proc, f"cannot write {tmp_path / 'afile' / 'face.png'}", "is a file, not a folder")


def _small_file_limit() -> None:
    # A full disk, simulated: writes past 2 KiB fail with EFBIG (and SIGXFSZ, which would kill, is ignored).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_full_disk_while_writing_is_a_one_line_error_and_leaves_nothing(tmp_path):
    out = tmp_path / "face.png"
    proc = run("edit", "--seed", "1", "--size", "256", "--out", str(out), preexec=_small_file_limit)
    one_line_error(proc, f"cannot write {out}", "File too large")
    assert list(tmp_path.iterdir()) == []  # no half-written output, no temporary


@pytest.mark.slow
def test_build_into_a_full_disk_is_a_one_line_error(tmp_path):
    # safetensors raises its own error type here; tlgan.atomic words it with the path.
    proc = run("build", "--n", "256", "--extractor", "imagestats", "--batch-size", "64", "--no-store-samples",
               "--out", str(tmp_path / "axes.safetensors"), preexec=_small_file_limit)
    one_line_error(proc, f"cannot write {tmp_path / 'axes.safetensors'}", "File too large")
    assert list(tmp_path.iterdir()) == []


def test_output_errors_from_the_library(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from tlgan.axes import store
    from tlgan.axes.defaults import load_default_axes
    from tlgan.errors import OutputError, TlganError

    def full_disk(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(store, "save_file", full_disk)
    with pytest.raises(OutputError) as info:
        load_default_axes().save(tmp_path / "a.safetensors")
    assert str(info.value) == f"cannot write {tmp_path / 'a.safetensors'}: No space left on device"
    assert isinstance(info.value, TlganError) and isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []

    def too_large(*args, **kwargs):  # the wording of safetensors 0.8
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")

    monkeypatch.setattr(store, "save_file", too_large)
    with pytest.raises(OutputError, match=r"a.safetensors: File too large$"):
        load_default_axes().save(tmp_path / "a.safetensors")


# --- signals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [0.2, 0.8, 2.0])
def test_sigint_while_starting_up_exits_cleanly(delay):
    proc = subprocess.Popen([TLGAN, "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the command finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("interrupted:"), err


def test_a_signal_after_the_command_finished_does_not_kill_it():
    """Python's shutdown (torch's teardown) comes after the output; a Ctrl-C there must not end in death by signal."""
    script = ("import os, signal, sys, time; from tlgan.apps.cli import main; sys.argv = ['tlgan', 'info']; "
              "main(); os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tlgan" in proc.stdout and proc.stderr == ""


@pytest.mark.slow
def test_sigterm_is_treated_like_ctrl_c(tmp_path):
    out = tmp_path / "axes.safetensors"
    cmd = [TLGAN, "build", "--n", "20000", "--extractor", "imagestats", "--device", "cpu", "--shard-size", "256",
           "--batch-size", "64", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "axes.samples"
    deadline = time.time() + 120
    while time.time() < deadline and not list(samples.glob("shard-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated: finished work is kept" in err and "Traceback" not in err
    assert list(samples.glob("shard-*")) and not out.exists()
    assert not list(samples.glob(".*.tmp")), "a temporary file was left behind"


# --- temporaries and permissions --------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, time
    from tlgan.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half")
        print("writing", flush=True)
        time.sleep(60)
""")


def test_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out.bin"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()  # SIGKILL: no cleanup can run
    writer.wait(timeout=30)
    [stale] = list(tmp_path.glob(".out.bin.*.tmp"))
    old = tmp_path / ".other.txt.abcd1234.tmp"  # an mkstemp-style temporary from an older tlgan, two hours old
    old.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    recent = tmp_path / ".recent.txt.abcd1234.tmp"  # maybe someone's write in progress: kept
    recent.write_text("x")
    alive = tmp_path / f".mine.txt.{os.getppid()}-0123abcd.tmp"  # a live process's temporary: kept
    alive.write_text("x")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("x")
    code = "import sys; from tlgan.atomic import write_text_atomic; write_text_atomic(sys.argv[1], 'done')"
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=60)
    assert target.read_text() == "done"
    assert not stale.exists() and not old.exists()
    assert recent.exists() and alive.exists() and unrelated.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_users_permissions(tmp_path, umask, mode):
    code = ("import os, sys, torch; os.umask(int(sys.argv[2], 8)); "
            "from tlgan.atomic import write_text_atomic; write_text_atomic(sys.argv[1] + '/a.txt', 'x'); "
            "from tlgan.axes.defaults import load_default_axes; load_default_axes().save(sys.argv[1] + '/b.safetensors')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), oct(umask)], check=True, timeout=120)
    for name in ("a.txt", "b.safetensors"):  # safetensors replaces the file it writes: still the user's mode
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


# --- the same command gives the same bytes ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["stored-samples", "no-store-samples"])
def test_two_identical_builds_write_identical_bytes(tmp_path, stream):
    outs = []
    for run_dir in ("a", "b"):
        folder = tmp_path / run_dir
        folder.mkdir()
        args = ["build", "--n", "200", "--extractor", "imagestats", "--batch-size", "50", "--out", "axes.safetensors"]
        proc = run(*args, *(["--no-store-samples"] if stream else []), cwd=folder)
        assert proc.returncode == 0, proc.stderr
        assert " s)" in proc.stderr  # the timing is printed ...
        outs.append((folder / "axes.safetensors").read_bytes())
    assert outs[0] == outs[1]  # ... and not stored
    assert b"_seconds" not in outs[0]


# --- headers and declarations ----------------------------------------------------------------------
def _with_header(src: Path, dst: Path, **changes) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        header = json.loads(f.metadata()["tlgan"])
    header.update(changes)
    save_file(tensors, str(dst), metadata={"tlgan": json.dumps(header)})
    return dst


def test_axis_header_fields_of_the_wrong_type(tmp_path):
    from tlgan.axes.defaults import DEFAULT_AXES
    from tlgan.axes.store import load_axes
    from tlgan.errors import TlganError

    bad = _with_header(DEFAULT_AXES, tmp_path / "bad.safetensors", names=5, latent_dim="x", quality=None, seed=1.5)
    with pytest.raises(TlganError) as info:
        load_axes(bad)
    message = str(info.value)
    for field in ("'names'", "'latent_dim'", "'quality'", "'seed'"):
        assert field in message, message
    assert "\n" not in message
    line = one_line_error(run("info", str(bad)), "'names'", "'latent_dim'")
    assert len(line) < 600
    version = _with_header(DEFAULT_AXES, tmp_path / "v.safetensors", version="abc")
    one_line_error(run("edit", "--axes", str(version), "--json"), "'version' must be an integer")
    # Unknown extra fields are allowed (other tools and newer versions add optional ones).
    extra = load_axes(_with_header(DEFAULT_AXES, tmp_path / "e.safetensors", latent_spread=[1.0], truncation=0.7))
    assert extra.names == load_axes(DEFAULT_AXES).names


def test_a_checked_header_is_remembered_and_a_changed_one_checked_again(tmp_path, monkeypatch):
    from tlgan.axes import header_schema
    from tlgan.axes.defaults import DEFAULT_AXES
    from tlgan.axes.store import load_axes

    monkeypatch.setenv("TLGAN_CACHE_DIR", str(tmp_path / "cache"))
    checked = []
    validate = header_schema.validate_axis_header
    monkeypatch.setattr(header_schema, "validate_axis_header", lambda h, p: (checked.append(p), validate(h, p)))
    load_axes(DEFAULT_AXES)
    load_axes(DEFAULT_AXES)
    assert checked == [DEFAULT_AXES]   # the second load skips the schema
    changed = _with_header(DEFAULT_AXES, tmp_path / "c.safetensors", seed=3)
    load_axes(changed)
    assert checked == [DEFAULT_AXES, changed]
    # nothing remembered for a header that failed: it fails again
    bad = _with_header(DEFAULT_AXES, tmp_path / "bad.safetensors", names=5)
    for _ in range(2):
        with pytest.raises(Exception, match="'names'"):
            load_axes(bad)


def test_huge_knob_value_message_is_short(tmp_path):
    line = one_line_error(run("edit", "--seed", "1", "--set", "happy=1e300", "--json", cwd=tmp_path), "1e+300")
    assert len(line) < 120


def test_deeply_nested_declarations_are_one_line_errors(tmp_path):
    import torch

    from tlgan.errors import TlganError
    from tlgan.models.generators import load_generator

    deep = "[" * 100_000 + "]" * 100_000
    module = torch.jit.script(torch.nn.Tanh())
    path = tmp_path / "deep.pt"
    torch.jit.save(module, str(path), _extra_files={"tlgan.json": '{"latent_dim": ' + deep + "}"})
    with pytest.raises(TlganError, match="nested too deeply|more than 32 levels"):
        load_generator(f"torchscript:{path}", "cpu")
    medium = tmp_path / "medium.pt"  # parses, but deeper than any declaration needs
    torch.jit.save(module, str(medium), _extra_files={"tlgan.json": '{"output_range": ' + "[" * 500 + "]" * 500 + "}"})
    with pytest.raises(TlganError, match="more than 32 levels"):
        load_generator(f"torchscript:{medium}", "cpu")
    pytest.importorskip("onnx")
    import numpy as np
    import onnx
    from _user_models import onnx_generator

    onnx_path = onnx_generator(tmp_path / "g.onnx", np.zeros((8, 192)), np.zeros(192))
    model = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(model, {"tlgan": '{"latent_dim": ' + deep + "}"})
    onnx.save(model, str(onnx_path))
    with pytest.raises(TlganError, match="nested too deeply|more than 32 levels"):
        load_generator(f"onnx:{onnx_path}", "cpu")
    proc = run("check-model", f"torchscript:{path}", "--kind", "generator")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
