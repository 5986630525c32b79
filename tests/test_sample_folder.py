"""Sample folders at fsspec URIs (what a Ray build's workers write to): the same shards and fit as at a path."""

from __future__ import annotations

import torch

from tlgan.axes.fit import fit_axes
from tlgan.models.extractors import load_extractor
from tlgan.sampling.folder import SampleFolder, is_uri
from tlgan.sampling.pipeline import iter_shards, read_manifest, run_samples


def test_file_uri_folder_holds_the_same_samples_and_fit(digiface, tmp_path):
    ext = load_extractor("imagestats", "cpu")
    run_samples(digiface, ext, 300, 5, tmp_path / "plain", shard_size=128, progress=False)
    uri = (tmp_path / "viauri").as_uri()
    assert is_uri(uri) and not is_uri(str(tmp_path))
    run_samples(digiface, ext, 300, 5, uri, shard_size=128, progress=False)
    names = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "viauri").iterdir())  # no temporary files left behind
    for name in names:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "viauri" / name).read_bytes(), name
    assert read_manifest(uri) == read_manifest(tmp_path / "plain")
    for (sa, za, fa), (sb, zb, fb) in zip(iter_shards(uri), iter_shards(tmp_path / "plain")):
        assert sa == sb and torch.equal(za, zb) and torch.equal(fa, fb)
    a, b = fit_axes(uri), fit_axes(tmp_path / "plain")
    assert torch.equal(a.axes, b.axes) and a.quality == b.quality
    # resuming at a URI skips the finished shards
    (tmp_path / "viauri" / names[1]).unlink()
    run_samples(digiface, ext, 300, 5, uri, shard_size=128, progress=False)
    assert (tmp_path / "viauri" / names[1]).read_bytes() == (tmp_path / "plain" / names[1]).read_bytes()


def test_folder_write_is_whole_or_nothing(tmp_path):
    folder = SampleFolder((tmp_path / "f").as_uri())
    folder.write_bytes("a.bin", b"x" * 1000)
    assert folder.exists("a.bin") and folder.read_bytes("a.bin") == b"x" * 1000
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["a.bin"]
