"""Shared pieces for the web and notebook tests: a knob set for the real DigiFace DCGAN, a small
extractor of image statistics, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import io
import socket
import threading
import time

import numpy as np
import torch
import uvicorn
from PIL import Image

from tlgan.axes.store import AxisSet
from tlgan.models.extractors import Extractor, Feature
from tlgan.sampling.latents import sample_latents

# name, kind, group, planted held-out R²
KNOBS = [
    ("happy", "probability", "expression", 0.55),
    ("surprise", "probability", "expression", 0.12),
    ("yaw", "real", "pose", 0.65),
    ("brightness", "real", "lighting and colour", 0.80),
    ("warmth", "real", "lighting and colour", 0.75),
    ("noise", "real", "other", 0.05),
]


class StatsExtractor(Extractor):
    """Mean luma ('brightness'), red minus blue ('warmth') and luma spread ('contrast') of images in [-1, 1]."""

    name, identity = "teststats", "teststats:v1"
    features = (Feature("brightness", "real", "lighting and colour"), Feature("warmth", "real", "lighting and colour"),
                Feature("contrast", "real", "lighting and colour"))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() + 1) / 2
        luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        return torch.stack([luma.mean((1, 2)), (x[:, 0] - x[:, 2]).mean((1, 2)), luma.std((1, 2))], 1)


def make_axes(generator, fitted: bool = True, seed: int = 0) -> AxisSet:
    """Random unit axes for the knobs, except 'brightness' (and 'warmth'), fitted by least squares on 512
    rendered faces when ``fitted``, so that moving them changes what StatsExtractor reads."""
    gen = torch.Generator().manual_seed(seed)
    axes = torch.nn.functional.normalize(torch.randn(len(KNOBS), generator.latent_dim, generator=gen), dim=1)
    if fitted:
        z = sample_latents(seed, 0, 512, generator.latent_dim)
        with torch.inference_mode():
            y = StatsExtractor()(generator(z))[:, :2].double()
        zc, yc = z.double() - z.double().mean(0), y - y.mean(0)
        w = torch.linalg.lstsq(zc, yc).solution.T  # (2, D)
        axes[3:5] = torch.nn.functional.normalize(w.float(), dim=1)
    return AxisSet(
        names=[k[0] for k in KNOBS], axes=axes, kinds=[k[1] for k in KNOBS], groups=[k[2] for k in KNOBS],
        generator=generator.identity, latent_dim=generator.latent_dim, method="test",
        quality={k[0]: {"r2": k[3]} for k in KNOBS}, descriptions={"happy": "probability of a happy expression"},
    )


def decode(data: bytes) -> np.ndarray:
    """PNG/WebP bytes -> (H, W, 3) uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class LiveServer:
    """Runs an ASGI app with uvicorn in a thread on a free 127.0.0.1 port."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


_SETUP: dict[str, object] = {}


def web_model():
    """(generator, axes) shared by every web/notebook test in the session (the fit takes ~2 s)."""
    if not _SETUP:
        from tlgan.models.generators import load_generator

        generator = load_generator("digiface", "cpu")
        _SETUP.update(generator=generator, axes=make_axes(generator))
    return _SETUP["generator"], _SETUP["axes"]


def subset_axes(axes: AxisSet, names: list[str]) -> AxisSet:
    """Another knob set of the same generator: only ``names``' rows."""
    rows = [axes.index(n) for n in names]
    return AxisSet(names=list(names), axes=axes.axes[rows].clone(), kinds=[axes.kinds[i] for i in rows],
                   groups=[axes.groups[i] for i in rows], generator=axes.generator, latent_dim=axes.latent_dim,
                   method=axes.method, quality={n: axes.quality[n] for n in names if n in axes.quality})
