"""The --exact flags and `tlgan exact-stats`, run as a user runs them, on the planted non-linear model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

TLGAN = str(Path(sys.executable).with_name("tlgan"))
MODEL = Path(__file__).with_name("planted_nonlinear.py")
GEN = f"entrypoint:{MODEL}:bent_generator"
EXT = f"entrypoint:{MODEL}:bent_extractor"


def run(*args, check=True):
    proc = subprocess.run([TLGAN, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def axes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("exact") / "bent.safetensors"
    bent_axes(BentGenerator(), BentExtractor()).save(path)
    return path


def test_exact_stats_then_edit_holds_the_locked_reading(axes_file, tmp_path):
    run("exact-stats", str(axes_file), "--n", "500", "--generator", GEN, "--extractor", EXT)
    info = json.loads(run("info", str(axes_file), "--json").stdout)
    assert info["reading_stats"]["samples"] == 500
    common = ["--axes", str(axes_file), "--generator", GEN, "--extractor", EXT, "--seed", "4"]
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    proc = run("edit", *common, "--exact", "--set", "tilt=1.5", "--lock", "bend", "--out", str(a), "--json")
    report = json.loads(proc.stdout)
    assert report["mode"] == "exact" and report["edits"][0]["exact"] is True
    assert abs(report["exact_after"]["tilt"] - 1.5) <= 0.05
    assert abs(report["exact_after"]["bend"] - report["exact_before"]["bend"]) <= 0.02
    assert report["exact_reports"][0]["converged"] and report["typicality"]["warn"] is False
    run("edit", *common, "--exact", "--set", "tilt=1.5", "--lock", "bend", "--out", str(b))
    assert a.read_bytes() == b.read_bytes()
    # linear mode: the locked knob value holds, its reading does not
    linear = json.loads(run("edit", *common, "--set", "tilt=1.5", "--lock", "bend", "--json").stdout)
    assert linear["mode"] == "linear" and "exact_after" not in linear


def test_exact_goal_out_of_reach_fails_loudly_unless_best_effort(axes_file, tmp_path):
    common = ["edit", "--axes", str(axes_file), "--generator", GEN, "--extractor", EXT, "--seed", "0", "--exact",
              "--set", "tilt=9", "--lock", "bend", "--lock", "smile", "--json"]
    out = tmp_path / "far.png"
    proc = run(*common, "--out", str(out), check=False)
    assert proc.returncode == 3 and not out.exists()
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: 'tilt' reached") and "is in the way" in line and "--best-effort" in line
    data = json.loads(proc.stdout)
    report = data["exact_reports"][0]
    assert data["converged"] is False and data["written"] is None
    assert not report["converged"] and report["blocked_by"] in ("bend", "smile")
    proc = run(*common, "--out", str(out), "--best-effort")
    assert out.exists() and "warning: 'tilt' reached" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["converged"] is False and data["exact_reports"][0]["reached"] > data["exact_reports"][0]["start"]


def test_lock_others_locks_every_knob_not_moved(axes_file):
    proc = run("edit", "--axes", str(axes_file), "--generator", GEN, "--extractor", EXT, "--seed", "2", "--exact",
               "--set", "tilt=0.5", "--lock-others", "--json", check=False)
    data = json.loads(proc.stdout)
    assert data["locks"] == ["bend", "glow", "smile"]
    assert proc.returncode in (0, 3) and data["converged"] is (proc.returncode == 0)
    for name in ("bend", "glow", "smile"):
        assert abs(data["exact_after"][name] - data["exact_before"][name]) <= 0.02
    bad = run("edit", "--axes", str(axes_file), "--generator", GEN, "--extractor", EXT, "--set", "tilt=1",
              "--lock", "tilt", "--json", check=False)
    assert bad.returncode == 1 and "both moved and locked" in bad.stderr


def test_linear_edit_warns_when_the_latent_leaves_typical_faces(axes_file):
    proc = run("edit", "--axes", str(axes_file), "--generator", GEN, "--extractor", EXT, "--seed", "0",
               "--set", "tilt=9", "--json")
    assert "warning: latent norm" in proc.stderr and "Exact mode" in proc.stderr
    assert json.loads(proc.stdout)["typicality"]["warn"] is True


def test_strip_and_evaluate_exact(axes_file, tmp_path):
    common = ["--axes", str(axes_file), "--generator", GEN, "--extractor", EXT]
    out = tmp_path / "strip.png"
    run("strip", "--axis", "smile", *common, "--exact", "--lock", "bend", "--steps", "3", "--range", "1",
        "--size", "16", "--out", str(out))
    assert out.stat().st_size > 0
    js = tmp_path / "eval.json"
    proc = run("evaluate", str(axes_file), "--generator", GEN, "--extractor", EXT, "--exact", "--n", "3",
               "--range", "1", "--steps", "3", "--json", str(js))
    data = json.loads(js.read_text())
    assert data["mode"] == "exact" and data["axes"][0]["reachable"] == 1.0
    assert "reach" in proc.stdout


def test_onnx_extractor_is_refused_for_exact(axes_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from _user_models import onnx_extractor

    path = onnx_extractor(tmp_path / "ext.onnx", meta={"features": [{"name": "tilt", "kind": "real"}],
                                                       "input_size": 16})
    proc = run("edit", "--axes", str(axes_file), "--generator", GEN, "--extractor", f"onnx:{path}", "--exact",
               "--set", "tilt=1", "--json", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: exact edits need gradients") and "torchscript:FILE" in proc.stderr


def test_evaluate_hold_identity_needs_exact_and_the_identity_model(axes_file, tmp_path):
    js = str(tmp_path / "eval.json")
    proc = run("evaluate", str(axes_file), "--generator", GEN, "--extractor", EXT, "--hold-identity", "--json", js,
               check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: --hold-identity holds identity on exact paths")
    proc = run("evaluate", str(axes_file), "--generator", GEN, "--extractor", EXT, "--exact", "--hold-identity",
               "--no-identity", "--json", js, check=False)
    assert proc.returncode == 1 and "drop --no-identity" in proc.stderr
