"""``tlgan ingest-celeba``: check a downloaded CelebA and write the crops TL-GAN trained on.

Reads a CelebA-format folder (see tlgan.training.celeba), checks that every
listed image exists and decodes, and writes ``OUT/img_crop/<file>`` (the
original crop: 128 x 128 centred at (89, 121) of the 178 x 218 aligned
images; central square for other sizes; same file names, JPEG quality 95
for .jpg files), copies of the two annotation files and
``tlgan_ingest.json``. Each crop is written atomically and existing crops
are kept, so an interrupted ingest resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tlgan.atomic import atomic_path, make_folder, write_text_atomic
from tlgan.errors import TlganError

from .celeba import ATTR_FILE, MANIFEST, PARTITION_FILE, read_celeba
from .data import crop_box


@dataclass
class IngestResult:
    out: Path
    images: int
    written: int
    skipped: int


def ingest_celeba(src: str | Path, out: str | Path | None = None, progress: bool = True) -> IngestResult:
    """Check ``src`` and write cropped images plus annotations to ``out`` (default: SRC/tlgan_crop)."""
    from tqdm import tqdm

    index = read_celeba(src)  # annotation files parsed and every image's presence checked
    if index.manifest.get("cropped"):
        raise TlganError(f"{index.root} is already an ingested folder")
    out = Path(out).expanduser() if out else index.root / "tlgan_crop"
    if out.resolve() == index.root.resolve():
        raise TlganError("the output folder must differ from the CelebA folder")
    crops = out / "img_crop"
    make_folder(crops)
    written = skipped = 0
    bad: list[str] = []
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}
    unknown = sorted({Path(n).suffix for n in index.files if Path(n).suffix.lower() not in formats})
    if unknown:
        raise TlganError(f"cannot write images of type {', '.join(unknown)}; use {', '.join(formats)}")
    targets = [crops / name for name in index.files]
    for i, target in enumerate(tqdm(targets, desc="cropping", unit="image", disable=not progress)):
        if target.is_file():
            skipped += 1
            continue
        try:
            with Image.open(index.path(i)) as image:
                image = image.convert("RGB")
                region = image.crop(crop_box(image.width, image.height, already_cropped=False))
                fmt = formats[target.suffix.lower()]
                with atomic_path(target) as tmp:
                    region.save(tmp, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            written += 1
        except (OSError, UnidentifiedImageError) as exc:
            bad.append(f"{index.files[i]} ({exc.__class__.__name__})")
    if bad:
        raise TlganError(f"{len(bad)} images could not be read, e.g. {', '.join(bad[:3])}; "
                         f"the {written + skipped} good crops are kept in {crops}")
    attr_lines = [str(len(index.files)), " ".join(index.names)]
    attr_lines += [f"{f} " + " ".join(str(int(v)) for v in row) for f, row in zip(index.files, index.labels)]
    write_text_atomic(out / ATTR_FILE, "\n".join(attr_lines) + "\n")
    write_text_atomic(out / PARTITION_FILE, "".join(f"{f} {int(p)}\n" for f, p in zip(index.files, index.partition)))
    manifest = {"cropped": True, "source": str(index.root.resolve()), "images": len(index.files),
                "crop": "128x128 centred at (89, 121) for 178x218 images, else the central square"}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return IngestResult(out, len(index.files), written, skipped)

