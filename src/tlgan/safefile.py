"""Reading the safetensors files tlgan writes: tensors plus a versioned JSON header under metadata key ``tlgan``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from .errors import TlganError


def read_tlgan_file(path: str | Path, fmt: str, version: int, what: str, framework: str = "pt",
                    no_header_hint: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, header) of a tlgan safetensors file whose header says ``format == fmt``.

    ``what`` names the kind of file in messages ("axis set", "extractor file"); ``framework`` is
    safetensors' ("pt" for torch tensors, "numpy" for arrays). Every problem — missing file,
    corrupt or truncated bytes, no header, another format, a newer version — is a one-line TlganError.
    """
    path = Path(path)
    a_what = f"{'an' if what[0] in 'aeiou' else 'a'} {what}"
    if not path.is_file():
        raise TlganError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework=framework) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise TlganError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from None
    try:
        header = json.loads(metadata["tlgan"])
    except (KeyError, json.JSONDecodeError):
        raise TlganError(f"{path} has no tlgan header: not {a_what}{no_header_hint}") from None
    except RecursionError:
        raise TlganError(f"{path}: its tlgan header is nested too deeply") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise TlganError(f"{path} is not {a_what} (format {header.get('format') if isinstance(header, dict) else None!r})")
    found = header.get("version", 0)
    if isinstance(found, bool) or not isinstance(found, int):
        raise TlganError(f"{path}: header field 'version' must be an integer, got {str(found)[:40]!r}")
    if found > version:
        raise TlganError(f"{path} uses {what} format version {header['version']}; this tlgan reads up to {version}")
    return tensors, header
