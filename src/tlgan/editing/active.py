"""Teaching a knob by clicking faces: labels given as (seed, label) pairs, and which faces to ask about next.

The labeller sees faces named by seeds (``seed_latents``) and answers 1
(*has it*) or 0 (*doesn't*). ``labels_from_examples`` checks such answers and
turns them into ``teach.Labels``; ``suggest`` picks the next faces to show:
mostly the candidates the current fit is least sure about (smallest distance
to its decision boundary — margin sampling), plus a share of random faces so
that the labelled set, and the cross-validated accuracy measured on it, never
covers only the hard cases near the boundary.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from tlgan.errors import TlganError
from tlgan.models.generators import Generator
from tlgan.sampling.latents import MAX_SEED
from tlgan.sampling.spaces import seed_latents

from .pools import MAX_POOL, POOL_SIZE, candidate_pool
from .teach import DEFAULT_C, Labels

if TYPE_CHECKING:
    from .looks import Looks

MIN_LABELS = 10         # a knob is fitted from at least this many faces ...
MIN_PER_CLASS = 3       # ... with at least this many of each answer (3-fold cross-validation needs 3)
MAX_LABELS = 2000
RANDOM_SHARE = 0.25     # of each suggested page

Example = tuple[int, int]   # (seed, label in {0, 1})


def check_pairs(examples: Sequence[Example]) -> None:
    """Refuse malformed answers: a seed that names no face, a label other than 0/1, a face labelled twice."""
    seen: set[int] = set()
    for seed, label in examples:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise TlganError(f"unknown seed {seed!r}: faces are named by whole numbers 0 … 2^63 − 1")
        if label not in (0, 1) or isinstance(label, bool):
            raise TlganError(f"label for seed {seed} must be 0 (doesn't have it) or 1 (has it), got {label!r}")
        if seed in seen:
            raise TlganError(f"seed {seed} is labelled twice")
        seen.add(seed)
    if len(examples) > MAX_LABELS:
        raise TlganError(f"{len(examples)} labels; at most {MAX_LABELS} are accepted")


def check_examples(examples: Sequence[Example], minimum: int = MIN_LABELS, per_class: int = MIN_PER_CLASS) -> None:
    """Refuse labels a knob cannot be fitted from, with a one-line TlganError saying why."""
    check_pairs(examples)
    ones = sum(label for _, label in examples)
    if examples and ones in (0, len(examples)):
        which = "1 (has it)" if ones else "0 (doesn't have it)"
        raise TlganError(f"all {len(examples)} labels are {which}; a knob needs faces with and without the feature")
    if len(examples) < minimum or min(ones, len(examples) - ones) < per_class:
        raise TlganError(f"{len(examples)} labels ({ones} has it, {len(examples) - ones} doesn't); a knob needs at "
                         f"least {minimum}, with at least {per_class} of each")


def examples_sha256(examples: Sequence[Example]) -> str:
    """A fingerprint of the labels, as the CSV 'seed,label' they would be written as."""
    text = "seed,label\n" + "".join(f"{s},{y}\n" for s, y in examples)
    return hashlib.sha256(text.encode()).hexdigest()


def labels_from_examples(examples: Sequence[Example], latent_dim: int, source: str = "web app",
                         generator: Generator | None = None) -> Labels:
    """Checked (seed, label) pairs -> Labels with the faces' latents z (N, D) (in ``generator``'s space when
    given: ``tlgan.sampling.spaces.seed_latents``)."""
    examples = [(int(s), int(y)) if not isinstance(s, bool) else (s, y) for s, y in examples]
    check_examples(examples)
    z = seed_latents([s for s, _ in examples], latent_dim, generator)
    y = torch.tensor([label for _, label in examples])
    return Labels(z, y, [s for s, _ in examples], "seed", source, examples_sha256(examples))


def quick_fit(z: torch.Tensor, y: torch.Tensor, c: float = DEFAULT_C,
              scale: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Logistic regression of y (N,) on z (N, D) without cross-validation: (weights (D,) float64, intercept).

    ``scale`` A (D, D): fit on z·A and return A·v (the prior of ``tlgan.editing.prior``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((z.double() if scale is None else z.double() @ scale.double()).numpy(), y.numpy().astype(np.int64))
    w = torch.from_numpy(model.coef_[0].astype(np.float64))
    return (w if scale is None else scale.double() @ w), float(model.intercept_[0])


@dataclass
class Suggestion:
    """Faces to label next: ``seeds``, and for each why it was picked ('uncertain' or 'random')."""

    seeds: list[int]
    reasons: list[str]


def suggest(examples: Sequence[Example], latent_dim: int, count: int, pool: int = 0,
            random_share: float = RANDOM_SHARE, c: float = DEFAULT_C, pool_size: int = POOL_SIZE,
            scale: torch.Tensor | None = None, looks: Looks | None = None,
            generator: Generator | None = None) -> Suggestion:
    """The ``count`` unlabelled faces of candidate pool ``pool`` that would teach the most.

    With at least two labels of each answer, a logistic fit on the labels so
    far ranks the candidates by distance to its decision boundary
    |z·w + b| / |w| (with ``looks``: the picture-space classifier's margin,
    ``tlgan.editing.looks``); the closest ``count − k`` are taken, plus ``k =
    max(1, round(count · random_share))`` random candidates. With fewer labels
    every face is random. ``scale``: the fit's prior (``quick_fit``);
    ``generator``: latents in its space (``seed_latents``). The page is shuffled, so the random faces cannot be told apart; the result is the
    same for the same labels.
    """
    if not 1 <= count <= 64:
        raise TlganError(f"count must be within 1 … 64, got {count}")
    if not 0 <= random_share <= 1:
        raise TlganError(f"random_share must be within 0 … 1, got {random_share}")
    check_pairs(examples)
    if looks is not None:
        generator = looks.generator
    seeds, z = candidate_pool(pool, latent_dim, pool_size, generator)
    labelled = {int(s) for s, _ in examples}
    free = np.array([i for i, s in enumerate(seeds.tolist()) if s not in labelled])
    if len(free) < count:
        raise TlganError(f"pool {pool} has only {len(free)} unlabelled faces left; ask with another pool")
    rng = np.random.default_rng([pool, len(examples), int(sum(s for s, _ in examples) % MAX_POOL)])
    ones = sum(y for _, y in examples)
    if min(ones, len(examples) - ones) < 2:
        picked, reasons = rng.choice(free, size=count, replace=False).tolist(), ["random"] * count
    else:
        n_random = min(count, max(1, round(count * random_share)))
        zl = seed_latents([s for s, _ in examples], latent_dim, generator).double()
        yl = torch.tensor([y for _, y in examples])
        if looks is not None:
            pictures = looks.pool_features(pool) if pool_size == POOL_SIZE else looks.features(z)
            model = looks.classifier(looks.features(zl), yl)
            margin = np.abs(model.decision_function(pictures[free].numpy()))
        else:
            w, b = quick_fit(zl, yl, c, scale)
            margin = ((z[free] @ w + b).abs() / w.norm().clamp_min(1e-12)).numpy()
        order = free[np.argsort(margin, kind="stable")]
        uncertain = order[: count - n_random].tolist()
        rest = np.setdiff1d(free, uncertain)
        randoms = rng.choice(rest, size=n_random, replace=False).tolist() if n_random else []
        picked, reasons = uncertain + randoms, ["uncertain"] * len(uncertain) + ["random"] * len(randoms)
    order = rng.permutation(len(picked))
    return Suggestion([int(seeds[picked[i]]) for i in order], [reasons[i] for i in order])


__all__ = ["MIN_LABELS", "MIN_PER_CLASS", "MAX_LABELS", "RANDOM_SHARE", "POOL_SIZE", "Example", "Suggestion",
           "check_pairs", "check_examples", "labels_from_examples", "candidate_pool", "quick_fit", "suggest", "examples_sha256"]
