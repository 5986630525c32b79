"""Unsupervised axis sets (sefa, pca): find directions, then let the extractors say what each one moves.

Axes are named ``<method>_<i>`` in the method's order (largest eigenvalue or
explained variance first). With an extractor, each axis is swept over a few
fresh faces (``label_axes``): the feature it moves most, in feature SDs per σ,
becomes its description and its knob group, and the axis is flipped if needed
so that moving it up raises that feature. ``tlgan rename`` gives axes better names.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from tlgan import timing
from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator
from tlgan.sampling.latents import check_seed
from tlgan.sampling.spaces import draw_latents
from tlgan.sampling.sweeps import effect_row, read_faces, read_sweeps

from . import UNSUPERVISED

LABEL_SWEEP = (-2.0, 0.0, 2.0)
LABEL_FACES = 64
LABEL_SEED = 7


def label_axes(generator: Generator, extractor: Extractor, directions: torch.Tensor, n: int = LABEL_FACES,
               seed: int = LABEL_SEED, batch_size: int = 256) -> tuple[torch.Tensor, list[tuple[int, float]], torch.Tensor]:
    """Re-scoring rows (K, F) of directions (K, D) on ``n`` faces, and per axis (feature index, effect) of its largest.

    Returns (effects, labels, signs): signs (K,) are ±1 so that ``signs[:, None] * directions``
    raise their label feature; effects and labels are given for the flipped axes.
    """

    z0 = draw_latents(generator, seed, 0, n)
    y0 = read_faces(generator, extractor, z0, batch_size)
    spread = y0.to(torch.float64).std(0)
    offsets = torch.tensor(LABEL_SWEEP, dtype=torch.float64)
    sweeps = read_sweeps(generator, extractor, z0, [(d, 1.0) for d in directions], offsets, y0, batch_size)
    rows = torch.stack([effect_row(r, offsets, spread) for r in sweeps])
    mag = torch.nan_to_num(rows.abs(), nan=-1.0)
    top = mag.argmax(1)
    signs = torch.sign(rows.gather(1, top[:, None])[:, 0])
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    rows = rows * signs[:, None]
    return rows, [(int(j), float(rows[k, j])) for k, j in enumerate(top)], signs


def _describe(rows: torch.Tensor, k: int, names: list[str]) -> str:
    order = torch.argsort(torch.nan_to_num(rows[k].abs(), nan=-1.0), descending=True)[:3].tolist()
    head, *rest = order
    text = f"moves {names[head]} most ({float(rows[k, head]):+.2f} SD per σ)"
    if rest:
        text += "; then " + ", ".join(f"{names[j]} {float(rows[k, j]):+.2f}" for j in rest)
    return text


def discover_axes(
    generator: Generator,
    method: str,
    components: int = 10,
    extractor: Extractor | None = None,
    n: int = 5000,
    seed: int = 0,
    layer: str | None = None,
    label_faces: int = LABEL_FACES,
    label_seed: int = LABEL_SEED,
    batch_size: int = 256,
) -> AxisSet:
    """An AxisSet of ``components`` unsupervised directions (sefa or pca), labelled by ``extractor`` if given.

    n, seed and layer are PCA's sample count, latent seed and activation layer
    (default: the first nonlinearity's output).
    """
    from .pca import generator_pca
    from .sefa import generator_sefa

    if method not in UNSUPERVISED:
        raise TlganError(f"discover finds unsupervised axes ({', '.join(UNSUPERVISED)}), not '{method}'")
    check_seed(seed)
    t0 = time.perf_counter()
    params: dict[str, Any] = {"components": components}
    if method == "sefa":
        directions, scores = generator_sefa(generator, components)
        score_name = "eigenvalue"
    else:
        directions, scores, layer = generator_pca(generator, components, n=n, seed=seed, layer=layer,
                                                  batch_size=max(batch_size, 64))
        score_name = "explained_variance"
        params.update({"layer": layer, "n": n, "seed": seed})
    timing.record("fit_seconds", time.perf_counter() - t0)
    names = [f"{method}_{i}" for i in range(len(directions))]
    quality = {name: {score_name: float(s)} for name, s in zip(names, scores)}
    groups, descriptions, ext_id = ["other"] * len(names), {}, ""
    if extractor is not None:
        rows, labels, signs = label_axes(generator, extractor, directions, label_faces, label_seed, batch_size)
        directions = directions * signs[:, None]
        features = list(extractor.features)
        for k, (j, effect) in enumerate(labels):
            groups[k] = features[j].group
            quality[names[k]]["top_effect"] = effect
            descriptions[names[k]] = _describe(rows, k, [f.name for f in features])
        params["labelled_by"] = {"faces": label_faces, "seed": label_seed, "sweep": list(LABEL_SWEEP)}
        ext_id = extractor.identity
    return AxisSet(
        names=names, axes=directions.float(), kinds=["real"] * len(names), groups=groups,
        generator=generator.identity, latent_dim=generator.latent_dim, method=method, extractor=ext_id,
        params=params, samples=n if method == "pca" else 0, seed=seed if method == "pca" else None,
        quality=quality, descriptions=descriptions,
    )
