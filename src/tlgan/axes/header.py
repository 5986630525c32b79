"""The axis-file header as data: a schema that checks the type of every known field before anything uses it.

A header that says ``version: "abc"``, ``names: 5``, ``latent_dim: "x"`` or
``quality: null`` is refused with one line naming each wrong field, instead of
failing somewhere later. Unknown extra fields are allowed (newer tlgan
versions and other tools may add optional fields); only the known ones are checked.

The schema lives in header_schema.py and loads pydantic, whose compiled core alone
costs about 80 ms, half of what a linear ``tlgan edit`` spends besides torch. So
a header that passed is remembered by the SHA-256 of its JSON in the cache
folder, and later loads of the same file skip the schema; any change to the
header is a new key and is checked again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tlgan.cache import cache_dir


def check_axis_header(header: dict[str, Any], path: str | Path) -> None:
    """TlganError, one line listing every known header field of the wrong type or missing; else nothing."""
    key = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()
    marker = cache_dir() / "checked-headers" / key
    if marker.is_file():
        return
    from .header_schema import validate_axis_header

    validate_axis_header(header, path)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # an unwritable cache only means checking again next time
