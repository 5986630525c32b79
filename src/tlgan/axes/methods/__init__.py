"""Direction-finding methods by name, and what each one needs.

Supervised methods fit one axis per extractor feature from a labelled sample
folder (``tlgan.fit.fit_axes``): ``tlgan`` and ``ridge`` (least squares,
streamed, in fit.py), ``svm`` (InterFaceGAN's boundary on the extremes of each
feature) and ``logistic`` (logistic regression on a threshold of each
feature). Unsupervised methods need the generator itself, not samples
(``tlgan.methods.discover.discover_axes``): ``sefa`` (closed form from the
first latent-to-feature weight) and ``pca`` (GANSpace). ``teach`` (few-shot,
from user labels) adds single axes to an existing set.
"""

from __future__ import annotations

from tlgan.errors import TlganError

LINEAR = ("tlgan", "ridge")
CLASSIFIERS = ("svm", "logistic")
SUPERVISED = LINEAR + CLASSIFIERS
UNSUPERVISED = ("sefa", "pca")
METHODS = SUPERVISED + UNSUPERVISED


def check_method(name: str) -> str:
    """Return ``name`` if it is a known method; TlganError listing the known ones otherwise."""
    if name not in METHODS:
        raise TlganError(f"unknown method '{name}'; available: {', '.join(METHODS)}")
    return name


def quality_metric(method: str) -> str | None:
    """The fit-quality number a method records per axis: 'r2', 'accuracy', or None (unsupervised)."""
    if method in LINEAR:
        return "r2"
    if method in CLASSIFIERS:
        return "accuracy"
    return None


__all__ = ["LINEAR", "CLASSIFIERS", "SUPERVISED", "UNSUPERVISED", "METHODS", "check_method", "quality_metric"]
