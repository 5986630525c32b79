"""What ``GET /api/model`` tells the page: knobs (with quality), groups, generator, extractor, limits."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, Field

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import DEFAULT_STEP, MAX_KNOB
from tlgan.errors import TlganError
from tlgan.models.extractors import GROUPS, Extractor, Feature
from tlgan.models.generators import Generator

from .schemas import MAX_BODY_BYTES, MAX_EDIT_LOCKS, MAX_EDITS, MAX_SIZE

SLIDER_RANGE = 4.0     # the page's sliders span ±4σ
WEAK_R2 = 0.3          # knobs whose held-out R² is below this are marked weak
DISPLAY_KEYS = {"title": str, "labels": dict, "weak_r2": float, "image_size": int}


class KnobOut(BaseModel):
    name: str
    label: str
    kind: str
    group: str
    r2: float | None
    weak: bool
    description: str
    shown: bool
    unit: str


class FeatureOut(BaseModel):
    name: str
    kind: str
    group: str
    description: str
    unit: str


class ModelOut(BaseModel):
    title: str
    generator: dict[str, Any]
    axes: dict[str, Any]
    knobs: list[KnobOut]
    groups: list[str]
    extractor: dict[str, Any] | None
    step: float
    slider_range: float
    max_value: float
    weak_r2: float
    image_size: int
    frame_size: int
    limits: dict[str, int]
    report: str | None = None
    sets: list[dict[str, str]] = []
    set: str | None = None


class ReadingOut(BaseModel):
    name: str
    value: float | None
    kind: str
    group: str


class IdentityOut(BaseModel):
    """How far the face is from the face it started as (the seed's, blended if ``mix``): dlib descriptor distance."""

    distance: float | None = Field(description="0 at the start face; null when the landmarks find no face")
    found: bool = Field(description="whether the landmarks found the face (in the start image and in this one)")
    tolerance: float = Field(description="how far a kept identity may drift (exact edits with the 'identity' lock)")
    stranger: float = Field(description="this generator's median distance between two different faces")
    kept: bool = Field(description="distance is within the tolerance")
    message: str = Field(description="one line: '0.08 from the original; another person is about 0.67', or why "
                                     "there is no number")


class ReadingsOut(BaseModel):
    values: dict[str, float]
    extractor: str | None
    readings: list[ReadingOut]
    typicality: dict[str, Any] | None = None
    exact_values: dict[str, float] | None = None
    exact_report: dict[str, Any] | None = None
    identity: IdentityOut | None = Field(None, description="null when identity cannot be read here (see "
                                                           "identity_detail)")
    identity_detail: str | None = Field(None, description="why identity is null (e.g. its weights are not installed)")


class ErrorOut(BaseModel):
    detail: str


def error_response(description: str, example: str) -> dict[str, Any]:
    """An OpenAPI response entry for a one-line error."""
    return {"model": ErrorOut, "description": description,
            "content": {"application/json": {"example": {"detail": example}}}}


def feature_unit(kind: str, description: str) -> str:
    """A short unit to print after a reading: '%' for probabilities, '°' for degrees, ' IOD' for
    inter-ocular distances, ' y' for years, else '' (read off the feature's description)."""
    if kind == "probability":
        return "%"
    text = description.lower()
    if re.search(r"\bdegrees?\b", text):
        return "°"
    if "inter-ocular" in text:
        return " IOD"
    if re.search(r"\bin years\b", text):
        return " y"
    return ""


def check_display(display: dict[str, Any] | None, axes: AxisSet) -> dict[str, Any]:
    """The ``display`` options of create_app, checked (TlganError names the bad one)."""
    display = dict(display or {})
    for key, value in display.items():
        if key not in DISPLAY_KEYS:
            raise TlganError(f"unknown display option '{key}'; valid: {', '.join(DISPLAY_KEYS)}")
        wanted = DISPLAY_KEYS[key]
        if not isinstance(value, wanted) and not (wanted is float and isinstance(value, int)):
            raise TlganError(f"display option '{key}' must be a {wanted.__name__}")
    for name in display.get("labels", {}):
        axes.index(name)
    if not 64 <= int(display.get("image_size", 512)) <= MAX_SIZE:
        raise TlganError(f"display image_size must be within 64..{MAX_SIZE}")
    return display


def _feature(f: Feature) -> dict[str, Any]:
    return {"name": f.name, "kind": f.kind, "group": f.group, "description": f.description,
            "unit": feature_unit(f.kind, f.description)}


def model_info(generator: Generator, axes: AxisSet, extractor: Extractor | None, shown: set[str],
               display: dict[str, Any]) -> dict[str, Any]:
    """The body of ``GET /api/model`` (see ModelOut)."""
    weak_r2 = float(display.get("weak_r2", WEAK_R2))
    labels = display.get("labels", {})
    features = {f.name: f for f in extractor.features} if extractor is not None else {}
    knobs = []
    for name, kind, group in zip(axes.names, axes.kinds, axes.groups):
        r2 = axes.r2(name)
        description = axes.descriptions.get(name, "") or (features[name].description if name in features else "")
        knobs.append({
            "name": name, "label": str(labels.get(name, name.replace("_", " "))), "kind": kind,
            "group": group if group in GROUPS else "other",
            "r2": None if r2 is None or not math.isfinite(r2) else float(r2),
            "weak": r2 is not None and math.isfinite(r2) and r2 < weak_r2,
            "description": description, "shown": name in shown, "unit": feature_unit(kind, description),
        })
    present = {k["group"] for k in knobs}
    return {
        "title": str(display.get("title", "tlgan")),
        "generator": {"name": generator.name, "identity": generator.identity, "latent_dim": generator.latent_dim,
                      "resolution": generator.resolution},
        "axes": {"method": axes.method, "latent_space": axes.latent_space, "samples": axes.samples,
                 "extractor": axes.extractor},
        "knobs": knobs,
        "groups": [g for g in GROUPS if g in present],
        "extractor": None if extractor is None else {
            "name": extractor.name, "features": [_feature(f) for f in extractor.features]},
        "step": DEFAULT_STEP, "slider_range": SLIDER_RANGE, "max_value": MAX_KNOB, "weak_r2": weak_r2,
        "image_size": int(display.get("image_size", 512)),
        # the page asks for frames at the generator's own size (the browser scales them): fewest bytes
        "frame_size": max(16, min(MAX_SIZE, int(generator.resolution))),
        "limits": {"max_edits": MAX_EDITS, "max_body_bytes": MAX_BODY_BYTES, "max_size": MAX_SIZE,
                   "max_edit_locks": MAX_EDIT_LOCKS},
    }
