"""The knob library on disk and `tlgan knobs`, run as a user runs them; library knobs in `tlgan edit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tlgan.axes.defaults import load_default_axes
from tlgan.editing.library import (
    ENV,
    KnobLibrary,
    axis_from_code,
    knob_code,
    knobs_dir,
    make_knob,
    merge_knobs,
)
from tlgan.errors import TlganError
from tlgan.sampling.latents import latent_for_seed

TLGAN = str(Path(sys.executable).with_name("tlgan"))
D = 100
RULE = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(3)), dim=0)


def examples(seeds, rule=RULE):
    return [(s, int(float(latent_for_seed(s, D) @ rule) > 0)) for s in seeds]


def run(*args, env=None):
    return subprocess.run([TLGAN, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def default_generator():
    return load_default_axes().generator


def test_library_folder_comes_from_option_env_or_user_data_dir(tmp_path, monkeypatch):
    assert knobs_dir(tmp_path / "a") == tmp_path / "a"
    monkeypatch.setenv(ENV, str(tmp_path / "b"))
    assert knobs_dir() == tmp_path / "b" and KnobLibrary().folder == tmp_path / "b"
    monkeypatch.delenv(ENV)
    import platformdirs

    assert knobs_dir() == Path(platformdirs.user_data_dir("tlgan", appauthor=False)) / "knobs"


def test_knob_codes_rebuild_the_stored_axis_exactly(default_generator):
    knob = make_knob("tilt", examples(range(40)), default_generator, D)
    code = knob_code(knob.axes[0], default_generator)
    assert len(code) == 272  # 4 + 2·100 bytes in base64url
    assert torch.equal(axis_from_code(code, default_generator, D), knob.axes[0])
    assert torch.nn.functional.cosine_similarity(knob.axes[0].double(), RULE.double(), dim=0) > 0.3  # 40 labels in 100-d; chance ~0.1
    with pytest.raises(TlganError, match="taught on another generator"):
        axis_from_code(code, "othergan:0", D)
    merged = merge_knobs(load_default_axes(), [knob])
    assert merged.names[-1] == "tilt" and merged.groups[-1] == "taught" and merged.params["taught"]["tilt"]["labels"] == 40
    with pytest.raises(TlganError, match="has the name of another taught knob"):
        merge_knobs(load_default_axes(), [knob, knob])
    with pytest.raises(TlganError, match="has the name of a built-in knob"):
        merge_knobs(merged, [knob])


def test_knobs_cli_list_export_import_remove(tmp_path, default_generator):
    lib = KnobLibrary(tmp_path / "lib")
    lib.save(make_knob("specs", examples(range(40)), default_generator, D))
    out = run("knobs", "list", "--knobs-dir", str(lib.folder))
    assert out.returncode == 0 and out.stdout.split()[:2] == ["specs", default_generator]
    assert "40 labels" in out.stdout and "cv acc" in out.stdout
    listed = json.loads(run("knobs", "list", "--json", env={ENV: str(lib.folder)}).stdout)
    assert listed["library"] == str(lib.folder) and listed["knobs"][0]["labels"] == 40
    exported = tmp_path / "specs-file.safetensors"
    assert run("knobs", "export", "specs", str(exported), "--knobs-dir", str(lib.folder)).returncode == 0
    other = KnobLibrary(tmp_path / "other")
    res = run("knobs", "import", str(exported), "--name", "glasses", "--knobs-dir", str(other.folder))
    assert res.returncode == 0 and "added 'glasses'" in res.stderr
    assert torch.equal(other.load("glasses").axes, lib.load("specs").axes)
    assert other.load("glasses").params["taught"]["glasses"]["examples"] == [list(e) for e in examples(range(40))]
    res = run("knobs", "import", str(exported), "--name", "glasses", "--knobs-dir", str(other.folder))
    assert res.returncode == 1 and res.stderr.strip() == ("error: the library already has a knob 'glasses'; remove "
                                                          "it first or choose another name")
    assert run("knobs", "remove", "glasses", "--knobs-dir", str(other.folder)).returncode == 0
    assert other.names() == []
    res = run("knobs", "remove", "glasses", "--knobs-dir", str(other.folder))
    assert res.returncode == 1 and res.stderr.startswith("error: no taught knob 'glasses'")


def test_teach_into_the_library_and_edit_with_the_knob(tmp_path, default_generator):
    lib = tmp_path / "lib"
    csv = tmp_path / "smile.csv"
    csv.write_text("seed,label\n" + "".join(f"{s},{y}\n" for s, y in examples(range(30))))
    res = run("teach", "smile2", "--labels", str(csv), "--knobs-dir", str(lib))
    assert res.returncode == 0, res.stderr
    assert KnobLibrary(lib).names() == ["smile2"]
    record = KnobLibrary(lib).load("smile2").params["taught"]["smile2"]
    assert record["prior"] == "looks" and record["looks"]["pool_size"] == 2000  # the default teacher
    res = run("edit", "--seed", "5", "--lock", "smile2", "--step", "yaw=0.5", "--json", "--extractor", "imagestats",
              env={ENV: str(lib)})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["locks"] == ["smile2"] and report["after"]["yaw"] == pytest.approx(report["before"]["yaw"] + 0.5)
    assert report["after"]["smile2"] == pytest.approx(report["before"]["smile2"], abs=1e-9)
    # a knob made for another generator is refused by name, and skipped (with a note) when the library is read
    KnobLibrary(lib).save(make_knob("alien", examples(range(30)), "othergan:1234", D))
    res = run("edit", "--seed", "5", "--set", "alien=1", "--out", str(tmp_path / "a.png"), env={ENV: str(lib)})
    assert res.returncode == 1
    assert ("tlgan: skipped taught knob 'alien' cannot be used here: axis set was made for generator "
            "'othergan:1234'") in res.stderr
    assert "error: unknown feature 'alien'" in res.stderr
    res = run("edit", "--seed", "5", "--set", "smile2=1", "--out", str(tmp_path / "b.png"), "--no-library",
              env={ENV: str(lib)})
    assert res.returncode == 1 and "unknown feature 'smile2'" in res.stderr


def test_the_notebook_panel_shows_library_knobs(tmp_path):
    from webtools import web_model

    from tlgan.apps.notebook import KnobPanel

    generator, axes = web_model()
    lib = KnobLibrary(tmp_path / "lib")
    lib.save(make_knob("specs", examples(range(30)), generator.identity, D))
    lib.save(make_knob("alien", examples(range(30)), "othergan:1", D))
    panel = KnobPanel(generator, axes, seed=2, size=64, library=str(lib.folder))
    assert list(panel.knobs)[-1] == "specs" and "alien" not in panel.knobs
    assert any("alien" in note for note in panel.library_notes)
    panel.knobs["specs"]["plus"].click()
    assert panel.editor.value("specs") == pytest.approx(panel.editor.values()["specs"])
    assert [e.knob for e in panel.editor.edits] == ["specs"]
    assert list(KnobPanel(generator, axes, seed=2, size=64, library=False).knobs)[-1] != "specs"


def test_tlgan_serve_keeps_taught_knobs_across_a_restart(tmp_path):
    import signal

    import httpx
    from webtools import web_model

    _, axes = web_model()
    path = tmp_path / "axes.safetensors"
    axes.save(path)
    lib = tmp_path / "lib"

    def start():
        proc = subprocess.Popen([TLGAN, "serve", "--axes", str(path), "--extractor", "none", "--port", "0",
                                 "--device", "cpu", "--knobs-dir", str(lib), "--teacher", "plain"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline()
        assert line.startswith("tlgan: serving on http://127.0.0.1:"), line
        return proc, line.split()[3].rstrip("/")

    def stop(proc):
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    labels = [{"seed": s, "label": y} for s, y in examples(range(30))]
    state = {"seed": 2, "edits": [{"op": "set", "knob": "specs", "value": 1.5, "locks": []}], "size": 64}
    proc, url = start()
    try:
        assert httpx.post(url + "/api/knobs", json={"name": "specs", "labels": labels}, timeout=60).status_code == 200
        image = httpx.post(url + "/api/render", json=state, timeout=60).content
    finally:
        stop(proc)
    assert KnobLibrary(lib).names() == ["specs"]
    proc, url = start()
    try:
        names = [k["name"] for k in httpx.get(url + "/api/model", timeout=30).json()["knobs"]]
        assert names[-1] == "specs"
        assert httpx.post(url + "/api/render", json=state, timeout=60).content == image
    finally:
        stop(proc)
