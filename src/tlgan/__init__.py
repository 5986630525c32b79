"""tlgan: transparent latent-space GANs — feature axes and knobs for a trained generator."""

from .errors import TlganError
from .extractors import load_extractor
from .generators import load_generator

__version__ = "0.1.0"

__all__ = ["TlganError", "load_generator", "load_extractor", "__version__"]
