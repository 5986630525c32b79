"""Legacy pickles: original-style direction files, the original asset folder, and pickles that would run code."""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from _tf1_files import g_paper_variables, write_tf1_pickle

from tlgan import TlganError, load_generator
from tlgan.axes.original import find_original_assets
from tlgan.axes.original_directions import import_axes, read_original_directions
from tlgan.axes.store import load_axes
from tlgan.models.extractors.celeba_attributes import CELEBA_ATTRIBUTES


def _unit_columns(dim: int, count: int, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).standard_normal((dim, count))
    return d / np.linalg.norm(d, axis=0)


def write_direction_pickle(path, direction, names, protocol=3):
    # The original script: pickle.dump({'direction': feature_direction, 'name': y_name}, f) on Python 3.6.
    with open(path, "wb") as handle:
        pickle.dump({"direction": direction, "name": names}, handle, protocol=protocol)
    return path


def test_reads_original_direction_pickle(tmp_path):
    direction = _unit_columns(512, 40)
    path = write_direction_pickle(tmp_path / "feature_direction_20181002_044444.pkl", direction, list(CELEBA_ATTRIBUTES))
    directions, names, meta = read_original_directions(path)
    np.testing.assert_allclose(directions, direction, atol=1e-12)
    assert names == list(CELEBA_ATTRIBUTES)
    assert meta["latent_dim"] == 512 and meta["renormalised"] is False
    assert meta["source"] == path.name and len(meta["source_sha256"]) == 16


def test_numpy1_pickle_names_names_array_and_renormalising(tmp_path):
    direction = 3.0 * _unit_columns(16, 3, seed=1)
    path = write_direction_pickle(tmp_path / "d.pkl", direction, np.array(["a", "b", "c"]), protocol=2)
    path.write_bytes(path.read_bytes().replace(b"numpy._core", b"numpy.core"))
    directions, names, meta = read_original_directions(path)
    assert names == ["a", "b", "c"] and meta["renormalised"] is True
    np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1.0)
    np.testing.assert_allclose(directions, direction / 3.0, atol=1e-12)


def test_import_axes_round_trip_and_notebook_view(tmp_path):
    direction = _unit_columns(32, 40, seed=2)
    path = write_direction_pickle(tmp_path / "d.pkl", direction, list(CELEBA_ATTRIBUTES))
    plain = import_axes(path, generator="pggan:abc")
    plain.save(tmp_path / "axes.safetensors")
    loaded = load_axes(tmp_path / "axes.safetensors")
    assert loaded.names == list(CELEBA_ATTRIBUTES) and loaded.generator == "pggan:abc"
    assert set(loaded.kinds) == {"tanh"} and loaded.method == "tl-gan-2018-import"
    torch.testing.assert_close(loaded.axes, torch.from_numpy(direction.T).float())

    view = import_axes(path, notebook_view=True)
    for old, new, sign in [("No_Beard", "Beard", -1), ("Pale_Skin", "Skin_Tone", -1), ("Young", "Age", -1),
                           ("Mouth_Slightly_Open", "Mouth_Open", 1), ("Male", "Male", 1)]:
        torch.testing.assert_close(view.axes[view.index(new)], sign * loaded.axes[loaded.index(old)])
    assert "No_Beard" not in view.names and "sign flipped" in view.descriptions["Age"]


@pytest.mark.parametrize(
    "obj, message",
    [
        ([1, 2, 3], "expected a dict"),
        ({"direction": np.zeros((4, 2))}, "'direction' and 'name'"),
        ({"direction": _unit_columns(8, 3), "name": ["a", "b"]}, "3 columns .* 2 names"),
        ({"direction": _unit_columns(8, 2), "name": ["a", "a"]}, "repeat"),
        ({"direction": np.zeros((8, 2)), "name": ["a", "b"]}, "zero"),
        ({"direction": np.full((8, 2), np.nan), "name": ["a", "b"]}, "NaN"),
        ({"direction": np.zeros(8), "name": ["a"]}, "2-D"),
        ({"direction": _unit_columns(8, 1), "name": [3]}, "list of strings"),
        ({"direction": np.array([[object()]], dtype=object), "name": ["a"]}, "dtype 'O8'|not allow"),
        ({"direction": _unit_columns(8, 1), "name": ["a"], "scale": np.float64(2.0)}, "scalar|not allow"),
    ],
    ids=["list", "no-name", "count", "dupes", "zero", "nan", "1d", "int-name", "object-array", "numpy-scalar"],
)
def test_malformed_direction_files(tmp_path, obj, message):
    path = tmp_path / "d.pkl"
    try:
        path.write_bytes(pickle.dumps(obj, protocol=4))
    except pickle.PicklingError:
        pytest.skip("cannot pickle")
    with pytest.raises(TlganError, match=message):
        read_original_directions(path)


class _RunsShell:
    """Unpickling this runs a shell command: the classic malicious pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsPopen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.marker)],))


class _RunsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("evil", [_RunsShell, _RunsPopen, _RunsEval])
def test_malicious_direction_pickle_is_refused_without_running(tmp_path, evil):
    marker = tmp_path / "pwned"
    for i, payload in enumerate([evil(marker), {"direction": evil(marker), "name": ["a"]}]):
        path = tmp_path / f"evil{i}.pkl"
        path.write_bytes(pickle.dumps(payload))
        with pytest.raises(TlganError, match="refusing"):
            read_original_directions(path)
        with pytest.raises(TlganError, match="refusing"):
            load_generator(f"pggan:{path}", device="cpu")
    assert not marker.exists()
    # The payload does work with the ordinary unpickler: the test pickle really is malicious.
    pickle.loads((tmp_path / "evil0.pkl").read_bytes())
    if evil is _RunsPopen:
        import time

        for _ in range(50):
            if marker.exists():
                break
            time.sleep(0.02)
    assert marker.exists()


def test_malicious_payload_inside_a_network_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    variables = g_paper_variables(resolution=8)
    path = write_tf1_pickle(tmp_path / "g.pkl", variables, 8, extra_static={"fmap_base": _RunsShell(marker)})
    with pytest.raises(TlganError, match="refusing .*posix.system|refusing .*os.system"):
        load_generator(f"pggan:{path}", device="cpu")
    assert not marker.exists()


def _original_layout(root, with_cnn=True, dim=32):
    (root / "asset_model" / "cnn_face_attr_celeba").mkdir(parents=True)
    (root / "asset_results" / "pg_gan_celeba_feature_direction_40").mkdir(parents=True)
    write_tf1_pickle(root / "asset_model" / "karras2018iclr-celebahq-1024x1024.pkl",
                     g_paper_variables(resolution=8, seed=4), 8)
    if with_cnn:
        (root / "asset_model" / "cnn_face_attr_celeba" / "model_20180927_032934.h5").write_bytes(b"")
    folder = root / "asset_results" / "pg_gan_celeba_feature_direction_40"
    write_direction_pickle(folder / "feature_direction_20180930_000000.pkl", _unit_columns(dim, 40, seed=8),
                           list(CELEBA_ATTRIBUTES))
    direction = _unit_columns(dim, 40, seed=5)
    write_direction_pickle(folder / "feature_direction_20181002_044444.pkl", direction, list(CELEBA_ATTRIBUTES))
    return direction


def test_original_asset_folder(tmp_path):
    direction = _original_layout(tmp_path)
    assets = find_original_assets(tmp_path)
    assert assets.generator_spec == f"pggan:{tmp_path / 'asset_model' / 'karras2018iclr-celebahq-1024x1024.pkl'}"
    assert assets.extractor_spec.endswith("cnn_face_attr_celeba/model_20180927_032934.h5")
    assert assets.directions_path.name == "feature_direction_20181002_044444.pkl"  # the latest one
    # The notebook's 7 x 3 layout (CelebA indices 20 39 26 / 5 28 4 / 7 27 18 / 31 21 33 / 24 16 30 / 9 8 17 / 15 34 38).
    assert assets.default_knobs == [
        "Male", "Age", "Skin_Tone", "Bangs", "Hairline", "Bald", "Big_Nose", "Pointy_Nose", "Makeup",
        "Smiling", "Mouth_Open", "Wavy_Hair", "Beard", "Goatee", "Sideburns", "Blond_Hair", "Black_Hair",
        "Gray_Hair", "Eyeglasses", "Earrings", "Necktie"]
    assert assets.sign_flips == ["No_Beard", "Pale_Skin", "Young"]
    for original, shown, sign in [("No_Beard", "Beard", -1), ("Young", "Age", -1), ("Smiling", "Smiling", 1)]:
        i, j = list(CELEBA_ATTRIBUTES).index(original), assets.names.index(shown)
        np.testing.assert_allclose(assets.directions[:, j], sign * direction[:, i])

    generator = load_generator(assets.generator_spec, device="cpu")
    axes = assets.axis_set(generator.identity)
    axes.check_generator(generator)
    assert axes.params["default_knobs"] == assets.default_knobs
    assert axes.groups[axes.index("Smiling")] == "expression"

    # The axes drive tlgan's Editor: setting Age (the flipped Young axis) with Male locked.
    from tlgan.editing.editor import Editor

    editor = Editor(generator, axes, seed=3)
    editor.lock("Male")
    male = editor.value("Male")
    editor.set("Age", 2.0)
    assert abs(editor.value("Age") - 2.0) < 1e-6 and abs(editor.value("Male") - male) < 1e-6
    assert editor.render().shape == (3, 8, 8)

    # After `tlgan convert pggan-tf1`, the faster converted file is used; same weights, same identity.
    from tlgan.models.generators.pggan import convert_tf1_to_safetensors

    pkl = tmp_path / "asset_model" / "karras2018iclr-celebahq-1024x1024.pkl"
    convert_tf1_to_safetensors(pkl, pkl.with_suffix(".safetensors"))
    converted = find_original_assets(tmp_path)
    assert converted.generator_spec == f"pggan:{pkl.with_suffix('.safetensors')}"
    axes.check_generator(load_generator(converted.generator_spec, device="cpu"))


def test_original_asset_folder_problems(tmp_path):
    with pytest.raises(TlganError, match="not found"):
        find_original_assets(tmp_path / "nowhere")
    _original_layout(tmp_path, with_cnn=False)
    assert find_original_assets(tmp_path).extractor_spec is None
    for p in (tmp_path / "asset_results").rglob("*.pkl"):
        p.unlink()
    with pytest.raises(TlganError, match="no feature directions"):
        find_original_assets(tmp_path)
    (tmp_path / "asset_model" / "karras2018iclr-celebahq-1024x1024.pkl").unlink()
    with pytest.raises(TlganError, match="no PG-GAN generator"):
        find_original_assets(tmp_path)
