"""The CLI run as a user runs it: the installed `tlgan` command in a subprocess."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

TLGAN = shutil.which("tlgan", path=str(Path(sys.executable).parent)) or "tlgan"


def run(*args, cwd=None, check=True):
    proc = subprocess.run([TLGAN, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_clean_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines, "no error message"
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_info_default():
    out = run("info").stdout
    assert "digiface" in out and "happy" in out and "held-out fit" in out and "R² 0.5" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows["age"][1:3] == ["real", "person"] and rows["male"][1:3] == ["probability", "person"]


def test_edit_writes_image_and_json(tmp_path):
    out = tmp_path / "face.png"
    proc = run("edit", "--seed", "3", "--set", "happy=2", "--step", "yaw=-0.4", "--lock", "brightness",
               "--out", str(out), "--json")
    report = json.loads(proc.stdout)
    assert report["after"]["happy"] > report["before"]["happy"] + 1  # set to 2, then nudged by the yaw step
    assert [(e["op"], e["knob"], e["value"], e["locks"]) for e in report["edits"]] == [
        ("set", "happy", 2.0, ["brightness"]), ("step", "yaw", -0.4, ["brightness"])]
    assert abs(report["after"]["brightness"] - report["before"]["brightness"]) < 1e-5
    assert set(report["readings"]) >= {"happy", "yaw", "brightness", "face_prob"}
    assert Image.open(out).size == (256, 256)


def test_edit_is_reproducible(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    run("edit", "--seed", "5", "--set", "surprise=1.5", "--out", str(a))
    run("edit", "--seed", "5", "--set", "surprise=1.5", "--out", str(b))
    assert a.read_bytes() == b.read_bytes()


def test_strip(tmp_path):
    out = tmp_path / "strip.png"
    run("strip", "--axis", "happy", "--seed", "2", "--steps", "5", "--size", "64", "--out", str(out))
    width, height = Image.open(out).size
    assert height == 64 and width == 5 * 64 + 4 * 2


def test_build_fit_info_on_real_generator(tmp_path):
    out = tmp_path / "axes.safetensors"
    proc = run("build", "--n", "600", "--extractor", "imagestats", "--device", "cpu", "--out", str(out))
    assert out.is_file() and "brightness" in proc.stdout
    info = json.loads(run("info", str(out), "--json").stdout)
    assert info["samples"] == 600 and info["names"][0] == "brightness" and info["generator"].startswith("digiface:")
    assert info["quality"]["brightness"]["r2"] > 0.3
    run("fit", str(tmp_path / "axes.samples"), "--method", "ridge", "--out", str(tmp_path / "r.safetensors"))
    run("edit", "--axes", str(out), "--seed", "1", "--set", "brightness=1", "--out", str(tmp_path / "f.png"))


def test_build_interrupted_then_resumed(tmp_path):
    out = tmp_path / "axes.safetensors"
    cmd = [TLGAN, "build", "--n", "6000", "--extractor", "imagestats", "--device", "cpu", "--shard-size", "256",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = tmp_path / "axes.samples"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(samples.glob("shard-*"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert not out.exists()
    kept = len(list(samples.glob("shard-*")))
    assert 2 <= kept < 24
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert out.is_file() and len(list(samples.glob("shard-*"))) == 24


@pytest.mark.parametrize("args, fragments", [
    (["edit", "--set", "smile=1", "--json"], ["unknown feature 'smile'", "valid names:", "happy"]),
    (["edit", "--set", "happy=nan", "--json"], ["finite number"]),
    (["edit", "--set", "happy=inf", "--json"], ["finite number"]),
    (["edit", "--set", "happy=99", "--json"], ["±10σ"]),
    (["edit", "--lock", "nope", "--json"], ["unknown feature 'nope'"]),
    (["edit", "--seed", "-3", "--json"], ["seed must be"]),
    (["edit", "--device", "tpu", "--json"], ["unknown device"]),
    (["build", "--n", "0"], ["--n must be positive"]),
    (["build", "--n", "-5"], ["--n must be positive"]),
    (["build", "--device", "cuda:7", "--n", "10"], ["CUDA"]),
    (["build", "--generator", "stylegan9", "--n", "10"], ["unknown generator 'stylegan9'"]),
    (["build", "--extractor", "telepathy", "--n", "10"], ["unknown extractor 'telepathy'"]),
    (["strip", "--axis", "smile", "--out", "x.png"], ["unknown feature 'smile'"]),
    (["edit", "--out", "face.gif"], [".png"]),
])
def test_bad_input_gets_one_line_error(tmp_path, args, fragments):
    proc = run(*args, cwd=tmp_path, check=False)
    assert_clean_error(proc, *fragments)
    assert not [p for p in tmp_path.iterdir()], "a failed command left files behind"


def test_corrupt_and_mismatched_axis_files(tmp_path):
    from tlgan.axes.defaults import DEFAULT_AXES

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(DEFAULT_AXES.read_bytes()[:100])
    assert_clean_error(run("info", str(bad), check=False), "corrupt or truncated")
    assert_clean_error(run("edit", "--axes", str(bad), "--json", check=False), "corrupt or truncated")
    from tlgan.axes.store import load_axes

    other = load_axes(DEFAULT_AXES)
    other.generator = "digiface:0000000000000000"
    other.save(tmp_path / "other.safetensors")
    assert_clean_error(run("edit", "--axes", str(tmp_path / "other.safetensors"), "--json", check=False),
                       "made for generator")
    assert_clean_error(run("info", str(tmp_path / "missing.safetensors"), check=False), "not found")
