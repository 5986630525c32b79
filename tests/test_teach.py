"""Few-shot axes from user labels: recovering a known rule, and clear errors for bad label files."""

import sys

import pytest
import torch
from click.testing import CliRunner
from planted import PlantedExtractor, PlantedGenerator

from tlgan.axes.fit import fit_axes
from tlgan.axes.store import load_axes
from tlgan.editing.teach import read_labels, teach
from tlgan.errors import TlganError
from tlgan.sampling.latents import latent_for_seed
from tlgan.sampling.pipeline import load_samples, run_samples

D = 16
RULE = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(42)), dim=0)


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teach")
    run_samples(PlantedGenerator(D), PlantedExtractor(D), 800, 0, folder / "s", progress=False)
    axes = fit_axes(folder / "s")
    axes.save(folder / "axes.safetensors")
    return folder, axes


def _rule_csv(path, seeds, header="seed,label"):
    rows = [header] + [f"{s},{int(float(latent_for_seed(s, D) @ RULE) > 0)}" for s in seeds]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_teach_recovers_the_rule_direction_and_adds_the_axis(base, tmp_path):
    _, axes = base
    labels = read_labels(_rule_csv(tmp_path / "glasses.csv", range(100, 160)), "glasses", D)
    assert labels.column == "seed" and len(labels.ids) == 60
    assert torch.equal(labels.z[0], latent_for_seed(100, D))  # the face `tlgan edit --seed 100` shows
    taught = teach(axes, "glasses", labels)
    assert taught.names == [*axes.names, "glasses"] and torch.equal(taught.axes[:4], axes.axes)
    assert _cos(taught.axes[-1], RULE) > 0.85
    record = taught.params["taught"]["glasses"]
    assert record["labels"] == 60 and record["id_column"] == "seed" and record["source"] == "glasses.csv"
    assert 0.7 < taught.quality["glasses"]["accuracy"] <= 1.0 and taught.kinds[-1] == "probability"
    assert taught.weights.shape == (D, 5) and taught.feature_std.shape == (5,)
    # more labels, closer to the rule
    more = teach(axes, "glasses", read_labels(_rule_csv(tmp_path / "more.csv", range(1000, 1400)), "glasses", D))
    assert _cos(more.axes[-1], RULE) > max(0.95, _cos(taught.axes[-1], RULE))


def test_teach_cli_writes_the_set_and_refuses_to_overwrite_an_axis(base, tmp_path):
    folder, _ = base
    from tlgan.apps.cli.main import cli

    csv = _rule_csv(tmp_path / "hat.csv", range(0, 50), header="notes,seed,hat")
    csv.write_text("\n".join(f"x,{line}" if i else line for i, line in enumerate(csv.read_text().splitlines())))
    out = tmp_path / "with-hat.safetensors"
    args = ["teach", "hat", "--labels", str(csv), "--axes", str(folder / "axes.safetensors"), "--out", str(out)]
    result = CliRunner().invoke(cli, args)  # learning from the pictures needs the axes' generator
    assert isinstance(result.exception, TlganError)
    assert str(result.exception).endswith("; give --generator SPEC (the axes' generator), or --teacher plain")
    result = CliRunner().invoke(cli, args + ["--teacher", "plain"])
    assert result.exit_code == 0, result.output
    assert "hat" in load_axes(out).names and "cross-validated" in result.output
    plain = ["--teacher", "plain"]
    result = CliRunner().invoke(cli, ["teach", "hat", "--labels", str(csv), "--axes", str(out)] + plain)
    assert isinstance(result.exception, TlganError) and "--replace" in str(result.exception)
    result = CliRunner().invoke(cli, ["teach", "hat", "--labels", str(csv), "--axes", str(out), "--replace"] + plain)
    assert result.exit_code == 0 and load_axes(out).names.count("hat") == 1


def test_teach_from_sample_indices(base, tmp_path):
    folder, axes = base
    _, z, _ = load_samples(folder / "s")
    rows = ["index,label"] + [f"{i},{int(float(z[i] @ RULE) > 0)}" for i in range(300, 380)]
    (tmp_path / "idx.csv").write_text("\n".join(rows))
    labels = read_labels(tmp_path / "idx.csv", "x", D, samples=folder / "s")
    assert labels.column == "index" and torch.equal(labels.z[5], z[305])
    assert _cos(teach(axes, "x", labels).axes[-1], RULE) > 0.85


BAD = [
    ("", "is empty"),
    ("face,label\n1,0\n", "no 'seed' column"),
    ("seed,value\n1,0\n", "no label column: call it 'label' or 'glasses'"),
    ("seed,label\n1,0\n2,yes\n", "line 3: label must be 0 or 1, got 'yes'"),
    ("seed,label\n1,0\n2,2\n", "line 3: label must be 0 or 1, got '2'"),
    ("seed,label\n1,0\n-4,1\n", "line 3: seed '-4' is not a face seed"),
    ("seed,label\n1,0\n1.5,1\n", "line 3: seed '1.5' is not a face seed"),
    ("seed,label\nabc,1\n", "line 2: seed 'abc' is not a face seed"),
    ("seed,label\n99999999999999999999,1\n", "is not a face seed"),
    ("seed,label\n1,0\n\n2,1\n1,1\n", "line 5: seed 1 is labelled again (first on line 2)"),
    ("seed,label\n1\n", "line 2: expected at least 2 columns"),
    ("seed,label\n" + "".join(f"{s},{s % 2}\n" for s in range(12)), "has 12 labelled faces (6 with 1, 6 with 0)"),
    ("seed,label\n" + "".join(f"{s},{int(s < 3)}\n" for s in range(40)), "at least 5 of each label"),
    ("seed,index,label\n1,1,0\n", "both 'seed' and 'index'"),
    ("index,label\n1,0\n", "need --samples"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_label_files_get_clear_errors(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(TlganError, match="labels.csv") as info:
        read_labels(path, "glasses", D)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_label_files_with_samples_and_other_files(base, tmp_path):
    folder, _ = base
    path = tmp_path / "labels.csv"
    path.write_text("index,label\n1,0\n800,1\n")
    with pytest.raises(TlganError, match=r"line 3: index '800' is not a sample number in .* \(0 … 799\)"):
        read_labels(path, "g", D, samples=folder / "s")
    path.write_text("seed,label\n1,0\n")
    with pytest.raises(TlganError, match="with --samples, faces are sample numbers in an 'index' column"):
        read_labels(path, "g", D, samples=folder / "s")
    with pytest.raises(TlganError, match="not found"):
        read_labels(tmp_path / "missing.csv", "g", D)
    path.write_bytes(b"seed,label\n\xff\xfe\x00")
    with pytest.raises(TlganError, match="not a UTF-8"):
        read_labels(path, "g", D)


def test_cli_prints_one_line_error_for_a_bad_csv(base, tmp_path, monkeypatch, capsys):
    folder, _ = base
    from tlgan.apps.cli.main import main

    (tmp_path / "bad.csv").write_text("seed,label\n1,maybe\n")
    monkeypatch.setattr(sys, "argv", ["tlgan", "teach", "g", "--labels", str(tmp_path / "bad.csv"),
                                      "--axes", str(folder / "axes.safetensors")])
    with pytest.raises(SystemExit) as exit_info:
        main(exiting=False)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: bad.csv line 2: label must be 0 or 1, got 'maybe'"


def test_bad_axis_names_and_groups(base, tmp_path):
    _, axes = base
    labels = read_labels(_rule_csv(tmp_path / "l.csv", range(40)), "ok", D)
    with pytest.raises(TlganError, match="bad axis name"):
        teach(axes, "two words", labels)
    with pytest.raises(TlganError, match="group must be one of"):
        teach(axes, "ok", labels, group="hats")
