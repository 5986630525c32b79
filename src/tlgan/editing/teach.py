"""Few-shot axes: a knob for something no extractor measures, from a few dozen yes/no labels.

The labels file is a CSV with a header. One column names the faces, one holds
the labels (0 or 1), other columns are ignored:

- ``seed``: the face ``tlgan.sampling.latents.latent_for_seed(seed, D)`` (for a StyleGAN seen
  in w: that z mapped, ``tlgan.sampling.spaces.face_latent``), i.e. the one
  ``tlgan edit --seed S`` and the web app's seed S show. Valid seeds are the
  integers 0 … 2^63 − 1.
- ``index`` (with a sample folder): sample number i of that folder
  (``tlgan build``'s samples), valid from 0 to the folder's N − 1.

The label column is called ``label`` or the new axis' name. A logistic
regression on z separates the 1s from the 0s; its unit weight vector, towards
1, is the axis. Quality is its cross-validated accuracy.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tlgan.axes.ops import add_axis, check_axis_name
from tlgan.axes.spaces import measure_spread
from tlgan.axes.store import AxisSet
from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.latents import MAX_SEED
from tlgan.sampling.spaces import seed_latents

if TYPE_CHECKING:
    from .looks import Looks

MIN_LABELS = 20
MIN_PER_CLASS = 5
MAX_FOLDS = 5
DEFAULT_C = 1.0


@dataclass
class Labels:
    """Parsed labels: latents z (N, D) float32, labels (N,) int64 in {0, 1}, and where they came from."""

    z: torch.Tensor
    y: torch.Tensor
    ids: list[int]
    column: str
    source: str
    sha256: str


def _int_id(raw: str) -> int | None:
    raw = raw.strip()
    if not raw or not (raw.isdigit() or (raw[0] == "+" and raw[1:].isdigit())):
        return None
    return int(raw)


def read_labels(path: str | Path, name: str, latent_dim: int, samples: str | Path | None = None) -> Labels:
    """Read and check a labels CSV (see module docstring); every problem is a one-line TlganError naming the line.

    A seed's latent is ``latent_for_seed``; for a StyleGAN seen in w, replace ``z`` with
    ``tlgan.sampling.spaces.seed_latents(ids, D, view)``."""
    path = Path(path)
    if not path.is_file():
        raise TlganError(f"labels file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TlganError(f"{path.name} is not a UTF-8 text CSV file") from None
    rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in r)]
    if not rows:
        raise TlganError(f"{path.name} is empty; expected a header 'seed,label' and one row per face")
    header_line, header = rows[0]
    cols = [c.strip().lower() for c in header]
    id_col = "index" if samples is not None else "seed"
    other = "seed" if samples is not None else "index"
    if id_col not in cols:
        hint = ("with --samples, faces are sample numbers in an 'index' column" if samples is not None
                else "faces are named by a 'seed' column (sample numbers in an 'index' column need --samples)")
        raise TlganError(f"{path.name} has no '{id_col}' column (header: {','.join(header)}); {hint}")
    if other in cols:
        raise TlganError(f"{path.name} has both 'seed' and 'index' columns; keep the one that names the faces "
                         f"({id_col} here)")
    label_names = [c for c in (name.lower(), "label") if c in cols]
    if not label_names:
        raise TlganError(f"{path.name} has no label column: call it 'label' or '{name}' (header: {','.join(header)})")
    id_at, label_at = cols.index(id_col), cols.index(label_names[0])

    limit = MAX_SEED
    if samples is not None:
        from tlgan.sampling.pipeline import read_manifest

        manifest = read_manifest(samples)
        if manifest.latent_dim != latent_dim:
            raise TlganError(f"{samples} holds {manifest.latent_dim}-d latents; the axis set is {latent_dim}-d")
        limit = manifest.n - 1
    ids, labels, first_line = [], [], {}
    for line, row in rows[1:]:
        if len(row) <= max(id_at, label_at):
            raise TlganError(f"{path.name} line {line}: expected at least {max(id_at, label_at) + 1} columns, "
                             f"got {len(row)}")
        face, raw_label = _int_id(row[id_at]), row[label_at].strip()
        if face is None or face > limit:
            where = f"a sample number in {samples} (0 … {limit})" if samples is not None else "a face seed (0 … 2^63 − 1)"
            raise TlganError(f"{path.name} line {line}: {id_col} '{row[id_at].strip()}' is not {where}")
        if raw_label not in ("0", "1"):
            raise TlganError(f"{path.name} line {line}: label must be 0 or 1, got '{raw_label}'")
        if face in first_line:
            raise TlganError(f"{path.name} line {line}: {id_col} {face} is labelled again (first on line {first_line[face]})")
        first_line[face] = line
        ids.append(face)
        labels.append(int(raw_label))
    ones = sum(labels)
    if len(labels) < MIN_LABELS or min(ones, len(labels) - ones) < MIN_PER_CLASS:
        raise TlganError(f"{path.name} has {len(labels)} labelled faces ({ones} with 1, {len(labels) - ones} with 0); "
                         f"teach needs at least {MIN_LABELS}, with at least {MIN_PER_CLASS} of each label")
    if samples is not None:
        from tlgan.axes.methods.common import gather_latents

        order = torch.tensor(sorted(ids))
        found = gather_latents(samples, None, order)
        row_of = {i: r for r, i in enumerate(order.tolist())}
        z = found[[row_of[i] for i in ids]].float()
    else:
        z = seed_latents(ids, latent_dim)
    return Labels(z, torch.tensor(labels), ids, id_col, path.name, hashlib.sha256(data).hexdigest())


def teach_direction(z: torch.Tensor, y: torch.Tensor, c: float = DEFAULT_C,
                    scale: torch.Tensor | None = None,
                    looks: Looks | None = None) -> tuple[torch.Tensor, float, float, int]:
    """Logistic regression of labels y (N,) on latents z (N, D).

    Returns (weights (D,) float64, intercept, cross-validated accuracy, folds):
    stratified k-fold with k = min(5, smaller class size). With ``scale`` A
    (D, D) the fit runs on z·A and the weights are A·v: an L2 fit under the
    prior w ~ N(0, A·Aᵀ) (see ``tlgan.editing.prior``). With ``looks`` the
    labels are learnt from the faces' pictures and carried to z through a pool
    of faces (``tlgan.editing.looks``); the accuracy is still that of the
    resulting latent model on held-out labels.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if not c > 0:
        raise TlganError(f"C must be positive, got {c}")
    t = y.numpy().astype(np.int64)
    folds = int(min(MAX_FOLDS, np.bincount(t, minlength=2).min()))
    if looks is not None:
        return _teach_by_looks(z.double(), y, looks, folds) + (folds,)
    x = z.to(torch.float64)
    x = (x if scale is None else x @ scale.double()).numpy()
    model = LogisticRegression(C=c, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = cross_val_score(model, x, t, cv=StratifiedKFold(folds, shuffle=True, random_state=0))
        model.fit(x, t)
    w = torch.from_numpy(model.coef_[0].astype(np.float64))
    return (w if scale is None else scale.double() @ w), float(model.intercept_[0]), float(cv.mean()), folds


def _teach_by_looks(z: torch.Tensor, y: torch.Tensor, looks: Looks, folds: int) -> tuple[torch.Tensor, float, float]:
    """``teach_direction`` through the pictures: (w (D,), b, cross-validated accuracy of z·w + b > 0)."""
    from sklearn.model_selection import StratifiedKFold

    x, t = looks.features(z), y.numpy().astype(np.int64)
    hits = 0
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x.numpy(), t):
        w, b = looks.knob(x[train], y[train])
        hits += int((((z[test] @ w + b) > 0).long() == y[test]).sum())
    w, b = looks.knob(x, y)
    return w, b, hits / len(t)


def teach(axis_set: AxisSet, name: str, labels: Labels, c: float = DEFAULT_C, group: str = "other",
          replace_existing: bool = False, samples: str | None = None, scale: torch.Tensor | None = None,
          looks: Looks | None = None, generator: Generator | None = None) -> AxisSet:
    """``axis_set`` plus an axis ``name`` fitted to ``labels`` (recorded in params['taught'][name]);
    ``scale`` (a prior) or ``looks`` (learning from the pictures): as in ``teach_direction``. A set in w or w+
    needs the ``generator`` view (or ``looks``) to measure the new axis' spread."""
    from tlgan.models.extractors import GROUPS

    check_axis_name(name)
    if group not in GROUPS:
        raise TlganError(f"group must be one of: {', '.join(GROUPS)}; got '{group}'")
    if labels.z.shape[1] != axis_set.latent_dim:
        raise TlganError(f"labels are {labels.z.shape[1]}-d latents; the axis set is {axis_set.latent_dim}-d")
    w, b, cv, folds = teach_direction(labels.z, labels.y, c, scale, looks)
    positives = int(labels.y.sum())
    record = {"labels": len(labels.ids), "positives": positives, "C": c, "cv_accuracy": cv, "folds": folds,
              "id_column": labels.column, "source": labels.source, "sha256": labels.sha256, "samples": samples,
              "prior": "looks" if looks is not None else "none" if scale is None else "sensitivity"}
    if looks is not None:
        record["looks"] = looks.params()
    train = float((((labels.z.double() @ w + b) > 0).long() == labels.y).double().mean())
    spread = None
    if axis_set.spread is not None:
        view = looks.generator if looks is not None else generator
        if view is None:
            raise TlganError(f"the axis set is in {axis_set.latent_space}: teaching into it needs its generator "
                             "(to measure the new knob's spread)")
        unit = (w / w.norm()).float()[None]
        spread = float(measure_spread(AxisSet(names=[name], axes=unit, kinds=["probability"], groups=[group],
                                              generator=axis_set.generator, latent_dim=axis_set.latent_dim,
                                              method="taught"), view, seed=0)[0])
    out = add_axis(
        axis_set, name, w, kind="probability", group=group, weight=w, intercept=b,
        quality={"accuracy": cv, "train_accuracy": train},
        description=f"taught from {len(labels.ids)} labels ({positives} yes) in {labels.source}; "
                    f"{folds}-fold cross-validated accuracy {cv:.2f}",
        positive_rate=positives / len(labels.ids), replace_existing=replace_existing, spread=spread,
    )
    taught = {k: v for k, v in axis_set.params.get("taught", {}).items() if k != name}
    out.params = {**axis_set.params, "taught": {**taught, name: record}}
    return out


__all__ = ["Labels", "read_labels", "teach_direction", "teach", "MIN_LABELS", "MIN_PER_CLASS"]
