"""Reading a CelebA-format folder: images, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``.

Attribute file: a line with the image count, a line of K attribute names
(any names), then one line per image: ``file v1 ... vK`` with values -1 or 1.
Partition file: ``file p`` per line, p = 0 (train), 1 (validation), 2 (test).
Images live in ``img_align_celeba/`` (also found: ``Img/img_align_celeba/``,
``images/``, or ``img_crop/`` written by ``ingest_celeba``); annotation files
at the top or in ``Anno/`` and ``Eval/`` as in the official download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlgan.errors import TlganError

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
MANIFEST = "tlgan_ingest.json"
IMAGE_DIRS = ("img_crop", "img_align_celeba", "Img/img_align_celeba", "images")
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class CelebaIndex:
    """A CelebA-format folder, parsed and checked.

    labels: (N, K) int8 in {-1, 1}; partition: (N,) int8 in {0, 1, 2};
    manifest: the ingest record when the images were already cropped by ``ingest_celeba`` (else {}).
    """

    root: Path
    image_dir: Path
    files: list[str]
    names: list[str]
    labels: np.ndarray
    partition: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> np.ndarray:
        """Row indices of split 'train', 'val' or 'test'."""
        return np.flatnonzero(self.partition == SPLITS[name])

    def path(self, i: int) -> Path:
        return self.image_dir / self.files[i]


def _find(root: Path, name: str, subdirs: tuple[str, ...]) -> Path:
    for sub in ("", *subdirs):
        candidate = root / sub / name
        if candidate.is_file():
            return candidate
    where = " or ".join(str(root / sub / name) for sub in ("", *subdirs))
    raise TlganError(f"{name} not found in {root} (looked for {where})")


def parse_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(files, names, labels (N, K) int8 in {-1, 1}) from a list_attr_celeba.txt; errors name the line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TlganError(f"cannot read {path}: {exc}") from None
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2:
        raise TlganError(f"{path}: expected a count line and a line of attribute names")
    try:
        count = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise TlganError(f"{path}, line 1: expected the number of images, got {lines[0][:40]!r}") from None
    names = lines[1].split()
    if not names:
        raise TlganError(f"{path}, line 2: no attribute names")
    if len(set(names)) != len(names):
        raise TlganError(f"{path}, line 2: attribute names repeat")
    rows = lines[2:]
    if len(rows) != count:
        raise TlganError(f"{path}: line 1 announces {count} images but {len(rows)} lines follow")
    files: list[str] = []
    labels = np.empty((count, len(names)), dtype=np.int8)
    for i, line in enumerate(rows):
        parts = line.split()
        if len(parts) != len(names) + 1:
            raise TlganError(f"{path}, line {i + 3}: expected a file name and {len(names)} values, got {len(parts)} fields")
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise TlganError(f"{path}, line {i + 3}: values must be -1 or 1") from None
        if any(v not in (-1, 1) for v in values):
            raise TlganError(f"{path}, line {i + 3}: values must be -1 or 1, got {sorted(set(values) - {-1, 1})}")
        files.append(parts[0])
        labels[i] = values
    if len(set(files)) != len(files):
        raise TlganError(f"{path}: some image files are listed twice")
    return files, names, labels


def parse_partition(path: Path) -> dict[str, int]:
    """file -> 0/1/2 from a list_eval_partition.txt."""
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TlganError(f"cannot read {path}: {exc}") from None
    for i, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise TlganError(f"{path}, line {i + 1}: expected 'file 0|1|2', got {line[:60]!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_celeba(root: str | Path, check_images: bool = True) -> CelebaIndex:
    """Parse and check a CelebA-format folder (see module docstring); TlganError for anything missing or malformed."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TlganError(f"CelebA folder not found: {root}")
    files, names, labels = parse_attributes(_find(root, ATTR_FILE, ("Anno",)))
    partition_of = parse_partition(_find(root, PARTITION_FILE, ("Eval",)))
    missing = [f for f in files if f not in partition_of]
    if missing:
        raise TlganError(f"{len(missing)} images have no partition in {PARTITION_FILE}, e.g. {', '.join(missing[:3])}")
    partition = np.array([partition_of[f] for f in files], dtype=np.int8)
    for split, code in SPLITS.items():
        if not (partition == code).any():
            raise TlganError(f"{PARTITION_FILE} puts no image in the {split} split ({code})")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise TlganError(f"no image folder in {root}: expected one of {', '.join(IMAGE_DIRS)}")
    manifest: dict[str, Any] = {}
    if (root / MANIFEST).is_file():
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except json.JSONDecodeError:
            raise TlganError(f"{root / MANIFEST} is not valid JSON; re-run tlgan ingest-celeba") from None
    if check_images:
        absent = [f for f in files if not (image_dir / f).is_file()]
        if absent:
            raise TlganError(f"{len(absent)} of {len(files)} images listed in {ATTR_FILE} are missing from {image_dir}, "
                             f"e.g. {', '.join(absent[:3])}")
    return CelebaIndex(root, image_dir, files, names, labels, partition, manifest)
