"""The axis-set file: safetensors tensors plus a JSON header that says what they mean.

Tensors: ``axes`` (K, D) unit rows; ``weights`` (D, K) raw regression slopes
and ``intercepts`` (K,) in link space; ``feature_mean``/``feature_std`` (K,) of
the raw readings over the samples (used to express effects in units of each
feature's spread); ``spread`` (K,), in spaces other than z, the standard deviation of the
sampled latents along each axis (a knob's value is its position / spread, so "σ" keeps its
meaning in StyleGAN's w); optional ``reading_mean``/``reading_std`` (K,): each axis'
target reading's mean and SD over faces in exact-link space (logit / arctanh /
raw), which standardise exact knob values (NaN for axes without a reading;
absent in older files, then derived by ``tlgan exact-stats``). The header (safetensors metadata key ``tlgan``) holds
the format version, generator identity and latent space, feature names, kinds
and groups, method and parameters, sample count, seed, extractor identity and
fit quality per axis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tlgan.atomic import atomic_path
from tlgan.errors import TlganError
from tlgan.safefile import read_tlgan_file

FORMAT = "tlgan.axes"
VERSION = 1
_TENSORS = ("axes", "weights", "intercepts", "feature_mean", "feature_std", "spread", "reading_mean", "reading_std")


@dataclass
class AxisSet:
    """K named unit axes in a generator's latent space, with how they were made.

    axes: (K, D) float32 unit rows. quality: per-axis dict of fit metrics
    (e.g. {"r2": 0.8}). Optional tensors may be None for imported sets.
    """

    names: list[str]
    axes: torch.Tensor
    kinds: list[str]
    groups: list[str]
    generator: str
    latent_dim: int
    method: str
    latent_space: str = "z"
    extractor: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    seed: int | None = None
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    weights: torch.Tensor | None = None
    intercepts: torch.Tensor | None = None
    feature_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None
    truncation: float = 1.0
    layers: dict[str, list[int]] = field(default_factory=dict)
    spread: torch.Tensor | None = None
    reading_mean: torch.Tensor | None = None
    reading_std: torch.Tensor | None = None
    reading_stats: dict[str, Any] = field(default_factory=dict)  # how reading_mean/std were made (optional)

    def __post_init__(self) -> None:
        k = len(self.names)
        if self.axes.ndim != 2 or self.axes.shape != (k, self.latent_dim):
            raise TlganError(f"axes must have shape ({k}, {self.latent_dim}), got {tuple(self.axes.shape)}")
        if len(set(self.names)) != k:
            raise TlganError("axis names must be unique")
        if len(self.kinds) != k or len(self.groups) != k:
            raise TlganError("names, kinds and groups must have the same length")
        if not bool(torch.isfinite(self.axes).all()):
            raise TlganError("axes contain NaN or infinite values")
        norms = self.axes.double().norm(dim=1)
        if k and bool(((norms - 1).abs() > 1e-3).any()):
            raise TlganError("axes must be unit vectors")
        self.axes = self.axes.to(torch.float32).contiguous()
        if self.spread is not None and (tuple(self.spread.shape) != (k,) or not bool((self.spread > 0).all())):
            raise TlganError("spread must hold one positive value per axis")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of the axis called ``name``; TlganError listing the valid names otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise TlganError(f"unknown feature '{name}'; valid names: {', '.join(self.names)}") from None

    def r2(self, name: str) -> float | None:
        return self.quality.get(name, {}).get("r2")

    def check_generator(self, generator: Any) -> None:
        """Refuse to use these axes with a generator they were not made for.

        A StyleGAN given whole (in z) passes for a set made in its w or w+ if the weights match:
        users of the set view it in that space (``axes.spaces.match_space``; the Editor does).
        """
        if (self.latent_space != "z" and getattr(generator, "latent_space", "z") == "z"
                and self.latent_space in getattr(generator, "spaces", ("z",))):
            if self.generator and generator.identity and generator.identity != self.generator.split("@")[0]:
                raise TlganError(f"axis set was made for generator '{self.generator}', not '{generator.identity}'")
            return
        if generator.latent_dim != self.latent_dim:
            raise TlganError(f"axis set is for latent size {self.latent_dim}, generator has {generator.latent_dim}")
        if self.generator and generator.identity and generator.identity != self.generator:
            raise TlganError(f"axis set was made for generator '{self.generator}', not '{generator.identity}'")

    def subset(self, names: list[str]) -> "AxisSet":
        """The axes called ``names``, in that order."""
        idx = [self.index(n) for n in names]
        pick = lambda t: None if t is None else (t[:, idx] if t.ndim == 2 else t[idx])  # noqa: E731
        return replace(
            self, names=list(names), axes=self.axes[idx], kinds=[self.kinds[i] for i in idx],
            groups=[self.groups[i] for i in idx], quality={n: self.quality[n] for n in names if n in self.quality},
            weights=pick(self.weights), intercepts=pick(self.intercepts),
            feature_mean=pick(self.feature_mean), feature_std=pick(self.feature_std), spread=pick(self.spread),
            layers={n: self.layers[n] for n in names if n in self.layers},
            reading_mean=pick(self.reading_mean), reading_std=pick(self.reading_std),
        )

    def renamed(self, mapping: dict[str, str]) -> "AxisSet":
        """A copy with axes renamed per ``mapping`` (old -> new)."""
        for old in mapping:
            self.index(old)
        names = [mapping.get(n, n) for n in self.names]
        return replace(self, names=names, quality={mapping.get(k, k): v for k, v in self.quality.items()},
                       descriptions={mapping.get(k, k): v for k, v in self.descriptions.items()},
                       layers={mapping.get(k, k): v for k, v in self.layers.items()})

    def extractor_spec(self) -> str:
        """Extractor names to re-read images with, from the stored identity ('emotion:ab12,imagestats:v1' -> 'emotion,imagestats')."""
        if not self.extractor:
            raise TlganError("this axis set does not name its extractors; pass --extractor")
        return ",".join(part.split(":")[0] for part in self.extractor.split(","))

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "generator": self.generator, "latent_space": self.latent_space,
            "latent_dim": self.latent_dim, "names": self.names, "kinds": self.kinds, "groups": self.groups,
            "method": self.method, "params": self.params, "samples": self.samples, "seed": self.seed,
            "extractor": self.extractor, "quality": self.quality, "descriptions": self.descriptions,
            "truncation": self.truncation, "layers": self.layers,
            **({"reading_stats": self.reading_stats} if self.reading_stats else {}),
        }

    def save(self, path: str | Path) -> None:
        """Write the set atomically to ``path`` (.safetensors)."""
        tensors = {name: getattr(self, name).detach().to("cpu", torch.float32).contiguous()
                   for name in _TENSORS if getattr(self, name) is not None}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"tlgan": json.dumps(self.header())})


def load_axes(path: str | Path) -> AxisSet:
    """Read an axis set written by ``AxisSet.save``; every problem becomes a one-line TlganError."""
    from .header import check_axis_header

    tensors, header = read_tlgan_file(path, FORMAT, VERSION, "axis file")
    check_axis_header(header, path)
    if "axes" not in tensors:
        raise TlganError(f"{path} has no 'axes' tensor")
    try:
        return AxisSet(
            names=list(header["names"]), axes=tensors["axes"], kinds=list(header["kinds"]), groups=list(header["groups"]),
            generator=header["generator"], latent_dim=int(header["latent_dim"]), method=header["method"],
            latent_space=header.get("latent_space", "z"), extractor=header.get("extractor", ""),
            params=header.get("params", {}), samples=int(header.get("samples", 0)), seed=header.get("seed"),
            quality=header.get("quality", {}), descriptions=header.get("descriptions", {}),
            truncation=float(header.get("truncation", 1.0)), layers=dict(header.get("layers") or {}),
            reading_stats=header.get("reading_stats", {}) or {},
            **{name: tensors.get(name) for name in _TENSORS[1:]},
        )
    except KeyError as exc:
        raise TlganError(f"{path} header lacks field {exc}") from None
