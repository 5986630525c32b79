"""Importing TL-GAN (2018) feature-direction pickles as tlgan axis sets.

The original file ``feature_direction_<time>.pkl`` is a pickle of
``{'direction': ndarray (D, K), 'name': [K attribute names]}``: unit columns,
one per CelebA attribute, fitted by regressing the feature CNN's tanh scores
on z. It is read through an unpickler that accepts NumPy arrays, lists and
strings only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tlgan.assets import file_hash
from tlgan.errors import TlganError
from tlgan.models.extractors.celeba_attributes import group_of
from tlgan.models.formats.unpickle import NUMPY_ARRAYS, load_pickle

WHAT = "TL-GAN feature-direction pickle"
METHOD = "tl-gan-2018-import"


def read_original_directions(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read a TL-GAN direction pickle.

    Returns (directions (D, K) float64 with unit columns, names [K], meta). meta
    holds the source file name and hash, latent size and whether the columns
    had to be renormalised (they are unit in the original files).
    """
    path = Path(path)
    obj = load_pickle(path, NUMPY_ARRAYS, WHAT)
    if not isinstance(obj, dict) or "direction" not in obj or "name" not in obj:
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise TlganError(f"{path} is not a TL-GAN direction file: expected a dict with 'direction' and 'name', got {keys}")
    direction, raw_names = obj["direction"], obj["name"]
    if not isinstance(direction, np.ndarray) or direction.ndim != 2 or direction.dtype.kind not in "fiu":
        raise TlganError(f"{path}: 'direction' must be a 2-D numeric array (latent size x features)")
    if isinstance(raw_names, np.ndarray) and raw_names.dtype.kind in "US":
        raw_names = raw_names.tolist()
    if not isinstance(raw_names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in raw_names):
        raise TlganError(f"{path}: 'name' must be a list of strings")
    names = [n.decode() if isinstance(n, bytes) else n for n in raw_names]
    dim, count = direction.shape
    if len(names) != count:
        raise TlganError(f"{path}: 'direction' has {count} columns (shape {dim}x{count}) but there are {len(names)} names")
    if len(set(names)) != count:
        raise TlganError(f"{path}: feature names repeat")
    directions = direction.astype(np.float64)
    if not np.isfinite(directions).all():
        raise TlganError(f"{path}: 'direction' contains NaN or infinite values")
    norms = np.linalg.norm(directions, axis=0)
    if (norms < 1e-12).any():
        zero = [names[i] for i in np.flatnonzero(norms < 1e-12)]
        raise TlganError(f"{path}: directions of {', '.join(zero)} are zero")
    renormalised = bool(np.abs(norms - 1).max() > 1e-6)
    meta = {"source": path.name, "source_sha256": file_hash(path), "format": "tl-gan-2018 feature_direction pickle",
            "latent_dim": int(dim), "renormalised": renormalised}
    return directions / norms, names, meta


def apply_view(directions: np.ndarray, names: Sequence[str], renames: dict[str, str],
               sign_flips: frozenset[str] | set[str]) -> tuple[np.ndarray, list[str]]:
    """Rename columns and negate those in ``sign_flips`` (matched by original name); returns copies."""
    unknown = sorted(set(sign_flips) - set(names))
    if unknown:
        raise TlganError(f"cannot flip unknown features: {', '.join(unknown)}")
    signs = np.array([-1.0 if n in sign_flips else 1.0 for n in names])
    shown = [renames.get(n, n) for n in names]
    if len(set(shown)) != len(shown):
        raise TlganError("renaming would give two features the same name")
    return directions * signs[None, :], shown


def to_axis_set(directions: np.ndarray, names: Sequence[str], meta: dict[str, Any], generator: str = "",
                kinds: str | Sequence[str] = "tanh", groups: Sequence[str] | None = None,
                descriptions: dict[str, str] | None = None):
    """An AxisSet of imported directions (D, K) for the generator with identity ``generator`` ('' = unbound)."""
    from .store import AxisSet

    count = directions.shape[1]
    return AxisSet(
        names=list(names), axes=torch.from_numpy(np.ascontiguousarray(directions.T)).float(),
        kinds=[kinds] * count if isinstance(kinds, str) else list(kinds),
        groups=list(groups) if groups is not None else [group_of(n) for n in names],
        generator=generator, latent_dim=int(directions.shape[0]), method=METHOD,
        params={k: v for k, v in meta.items()}, descriptions=dict(descriptions or {}),
    )


def import_axes(path: str | Path, generator: str = "", notebook_view: bool = False):
    """Read a TL-GAN direction pickle into an AxisSet.

    notebook_view: use the original notebook's names and sign flips (No_Beard
    -> Beard, Pale_Skin -> Skin_Tone, Young -> Age, ...). Groups follow the
    CelebA attribute, descriptions say where each axis came from.
    """
    from tlgan.models.extractors.celeba_attributes import (
        NOTEBOOK_RENAMES,
        NOTEBOOK_SIGN_FLIPS,
    )

    directions, names, meta = read_original_directions(path)
    groups = [group_of(n) for n in names]
    descriptions = {n: f"CelebA attribute '{n}'" for n in names}
    if notebook_view:
        flips = NOTEBOOK_SIGN_FLIPS & set(names)
        renames = {n: NOTEBOOK_RENAMES[n] for n in names if n in NOTEBOOK_RENAMES}
        directions, shown = apply_view(directions, names, renames, flips)
        descriptions = {renames.get(n, n): f"CelebA attribute '{n}'" + (", sign flipped" if n in flips else "")
                        for n in names}
        meta = {**meta, "view": "tl-gan notebook", "renames": renames, "sign_flips": sorted(flips)}
        names = shown
    return to_axis_set(directions, names, meta, generator=generator, groups=groups, descriptions=descriptions)
