"""tlgan: transparent latent-space GANs — feature axes and knobs for a trained generator."""

from tlgan.axes.fit import fit_axes
from tlgan.axes.store import AxisSet, load_axes
from tlgan.editing.editor import Edit, Editor
from tlgan.models.extractors import load_extractor
from tlgan.models.generators import load_generator
from tlgan.sampling.pipeline import run_samples

from .errors import TlganError

__version__ = "0.1.0"

__all__ = ["TlganError", "load_generator", "load_extractor", "run_samples", "fit_axes", "AxisSet", "load_axes",
           "Edit", "Editor", "__version__"]
