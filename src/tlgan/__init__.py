"""tlgan: transparent latent-space GANs — feature axes and knobs for a trained generator."""

from .editor import Edit, Editor
from .errors import TlganError
from .extractors import load_extractor
from .fit import fit_axes
from .generators import load_generator
from .pipeline import run_samples
from .store import AxisSet, load_axes

__version__ = "0.1.0"

__all__ = ["TlganError", "load_generator", "load_extractor", "run_samples", "fit_axes", "AxisSet", "load_axes",
           "Edit", "Editor", "__version__"]
