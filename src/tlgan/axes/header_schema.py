"""The pydantic schema of the axis-file header: every known field typed; unknown extra fields allowed.

Imported only when a header is checked (``header.check_axis_header``): pydantic's compiled core costs
about 80 ms to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tlgan.errors import TlganError


class AxisHeader(BaseModel):
    """Known fields of the JSON header of an axis file (safetensors metadata key ``tlgan``), strictly typed."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: str
    version: int = Field(ge=1)
    generator: str
    latent_dim: int = Field(gt=0)
    names: list[str]
    kinds: list[str]
    groups: list[str]
    method: str
    latent_space: str = "z"
    extractor: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    samples: int = Field(0, ge=0)
    seed: int | None = None
    quality: dict[str, dict[str, Any]] = Field(default_factory=dict)
    descriptions: dict[str, str] = Field(default_factory=dict)


def _shown(value: Any, limit: int = 40) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_axis_header(header: dict[str, Any], path: str | Path) -> None:
    """TlganError, one line listing every known header field of the wrong type or missing; else nothing."""
    try:
        AxisHeader.model_validate(header)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "header"
            if error["type"] == "missing":
                problems.append(f"'{where}' is missing")
            else:
                problems.append(f"'{where}': {error['msg'][0].lower()}{error['msg'][1:]} (got {_shown(error['input'])})")
        raise TlganError(f"{path}: bad axis-file header: {'; '.join(problems)}") from None
