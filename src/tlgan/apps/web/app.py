"""The web app: a FastAPI API over the Editor, plus one static page that uses only that API.

Endpoints (OpenAPI at /openapi.json):
  GET  /api/model     knobs (names, kinds, groups, held-out R²), generator and extractor
  POST /api/render    seed + edits + locks -> PNG or WebP; knob values in the X-Knob-Values header
  POST /api/readings  seed + edits + locks -> knob values and the extractor's readings of the image
  POST /api/strip     one knob swept −span…+span σ from the current state -> one PNG row
Requests are stateless (the client holds the state; the server replays it),
so any state can be shared as a link. Bad input gets 422 with a one-line
``detail``; bodies over MAX_BODY_BYTES get 413. No endpoint reads a path the
client gives: the page's three files are read once, at start-up.
"""

from __future__ import annotations

import json
import math
import socket
import time
import webbrowser
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, AsyncIterator

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import DEFAULT_STEP, MAX_KNOB, Editor
from tlgan.errors import TlganError
from tlgan.models.extractors import GROUPS, Extractor
from tlgan.models.generators import Generator

from .frames import encode_frame, png_bytes, tile_row, upscale
from .limits import BodyLimit
from .renderer import BatchRenderer
from .schemas import MAX_BODY_BYTES, MAX_EDITS, MAX_SIZE, RenderIn, StateIn, StripIn
from .state import Replayer

SLIDER_RANGE = 4.0     # the page's sliders span ±4σ
WEAK_R2 = 0.3          # knobs whose held-out R² is below this are marked weak
DISPLAY_KEYS = {"title": str, "labels": dict, "weak_r2": float, "image_size": int}
MEDIA = {"png": "image/png", "webp": "image/webp"}
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


# ---- response models (for the OpenAPI document) ------------------------------
class KnobOut(BaseModel):
    name: str
    label: str
    kind: str
    group: str
    r2: float | None
    weak: bool
    description: str
    shown: bool


class FeatureOut(BaseModel):
    name: str
    kind: str
    group: str
    description: str


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
    limits: dict[str, int]


class ReadingOut(BaseModel):
    name: str
    value: float | None
    kind: str
    group: str


class ReadingsOut(BaseModel):
    values: dict[str, float]
    extractor: str | None
    readings: list[ReadingOut]
    typicality: dict[str, Any] | None = None
    exact_values: dict[str, float] | None = None
    exact_report: dict[str, Any] | None = None


ERROR = {"description": "bad request: the one-line reason is in `detail`",
         "content": {"application/json": {"example": {"detail": "unknown feature 'hapy'; valid names: happy, yaw"}}}}


def _check_display(display: dict[str, Any] | None, axes: AxisSet) -> dict[str, Any]:
    display = dict(display or {})
    for key, value in display.items():
        if key not in DISPLAY_KEYS:
            raise TlganError(f"unknown display option '{key}'; valid: {', '.join(DISPLAY_KEYS)}")
        wanted = DISPLAY_KEYS[key]
        if not isinstance(value, wanted) and not (wanted is float and isinstance(value, int)):
            raise TlganError(f"display option '{key}' must be a {wanted.__name__}")
    for name in display.get("labels", {}):
        axes.index(name)
    return display


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _model_info(generator: Generator, axes: AxisSet, extractor: Extractor | None, shown: set[str],
                display: dict[str, Any]) -> dict[str, Any]:
    weak_r2 = float(display.get("weak_r2", WEAK_R2))
    labels = display.get("labels", {})
    knobs = []
    for name, kind, group in zip(axes.names, axes.kinds, axes.groups):
        r2 = axes.r2(name)
        knobs.append({
            "name": name, "label": str(labels.get(name, name.replace("_", " "))), "kind": kind,
            "group": group if group in GROUPS else "other",
            "r2": None if r2 is None or not math.isfinite(r2) else float(r2),
            "weak": r2 is not None and math.isfinite(r2) and r2 < weak_r2,
            "description": axes.descriptions.get(name, ""), "shown": name in shown,
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
            "name": extractor.name,
            "features": [{"name": f.name, "kind": f.kind, "group": f.group, "description": f.description}
                         for f in extractor.features]},
        "step": DEFAULT_STEP, "slider_range": SLIDER_RANGE, "max_value": MAX_KNOB, "weak_r2": weak_r2,
        "image_size": int(display.get("image_size", 512)),
        "limits": {"max_edits": MAX_EDITS, "max_body_bytes": MAX_BODY_BYTES, "max_size": MAX_SIZE},
    }


def create_app(generator: Generator, axes: AxisSet, extractor: Extractor | None, default_view: list[str] | None = None,
               display: dict[str, Any] | None = None, *, max_batch: int = 64) -> FastAPI:
    """Build the app for one generator and axis set.

    Args:
        generator: the Generator, on the device it should render on.
        axes: the knobs (checked against the generator).
        extractor: gives live readings of the current image; None for none.
        default_view: knobs shown at first (the rest sit under "more knobs"); None shows all.
        display: optional page settings: ``title`` (str), ``labels`` ({knob: label}),
            ``weak_r2`` (knobs with held-out R² below it are marked weak, default 0.3),
            ``image_size`` (px of the main image, default 512).
    """
    axes.check_generator(generator)
    if extractor is not None:
        extractor = extractor.eval().requires_grad_(False)
    shown = set(axes.names if default_view is None else default_view)
    for name in shown:
        axes.index(name)
    display = _check_display(display, axes)
    info = _model_info(generator, axes, extractor, shown, display)
    if not 64 <= info["image_size"] <= MAX_SIZE:
        raise TlganError(f"display image_size must be within 64..{MAX_SIZE}")
    static_dir = resources.files("tlgan.apps.web") / "static"
    page = (static_dir / "index.html").read_text(encoding="utf-8")
    assets = {name: (static_dir / name).read_bytes() for name in STATIC}
    replayer = Replayer(generator, axes, extractor=extractor)
    renderer = BatchRenderer(generator, extractor, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        renderer.close()

    app = FastAPI(title="tlgan", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Edit a generator's images with one knob per feature. State is (seed, edits, locks); "
                              "every request carries it, so the API is stateless and any state can be shared.")
    app.state.renderer, app.state.replayer = renderer, replayer
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(TlganError)
    async def tlgan_error(_: Request, exc: TlganError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"server error: {type(exc).__name__}: {exc}"}, status_code=500)

    def knob_values(editor: Editor, exact: bool) -> dict[str, float]:
        """Every knob's value: in exact mode the standardised reading where the knob has one, else its σ."""
        values = editor.values()
        return {**values, **editor.exact_values()} if exact else values

    def frame(state: StateIn, read: bool = False) -> tuple[Editor, Any]:
        editor = replayer.editor(state.seed, state.edit_list(), state.locks)
        return editor, renderer.render(editor.latent()[None], read=read)

    # ---- the page --------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    @app.get("/static/app.js", include_in_schema=False)
    def script() -> Response:
        return Response(assets["app.js"], media_type=STATIC["app.js"], headers=PAGE_HEADERS)

    @app.get("/static/style.css", include_in_schema=False)
    def style() -> Response:
        return Response(assets["style.css"], media_type=STATIC["style.css"], headers=PAGE_HEADERS)

    # ---- the API ---------------------------------------------------------------
    @app.get("/api/model", response_model=ModelOut, summary="Model info: knobs, groups, quality")
    def model() -> dict[str, Any]:
        return info

    @app.post("/api/render", response_class=Response, summary="Render a state as PNG or WebP",
              responses={200: {"content": {"image/png": {}, "image/webp": {}},
                               "description": "the image; header X-Knob-Values holds every knob's value in σ "
                                              "(JSON list in /api/model's knob order)"},
                         422: ERROR, 413: {"description": "request body too large"}})
    def render(request: RenderIn) -> Response:
        start = time.perf_counter()
        editor, frames = frame(request)
        data = encode_frame(frames.pixels[0], request.size, request.format)
        values = knob_values(editor, request.exact)
        typical = editor.typicality()
        headers = {
            "X-Knob-Values": json.dumps([values[n] for n in axes.names]),
            "X-Latent-Typicality": json.dumps({k: typical[k] for k in ("norm", "expected", "quantile", "warn")}),
            "Server-Timing": f"frame;dur={(time.perf_counter() - start) * 1000:.2f}",
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        }
        report = editor.last_report()
        if report is not None and not report["converged"]:
            headers["X-Exact-Report"] = json.dumps(report["message"])  # ASCII-escaped JSON string
        return Response(data, media_type=MEDIA[request.format], headers=headers)

    @app.post("/api/readings", response_model=ReadingsOut, summary="Knob values and the extractor's readings",
              responses={422: ERROR})
    def readings(request: StateIn) -> dict[str, Any]:
        if extractor is None:
            editor = replayer.editor(request.seed, request.edit_list(), request.locks)
            return {"values": editor.values(), "extractor": None, "readings": []}
        editor, frames = frame(request, read=True)
        row = frames.readings[0]
        return {"values": editor.values(), "extractor": extractor.name, "typicality": editor.typicality(),
                "exact_values": editor.exact_values() if request.exact else None,
                "exact_report": editor.last_report(), "readings": [
            {"name": f.name, "value": float(v) if math.isfinite(float(v)) else None, "kind": f.kind, "group": f.group}
            for f, v in zip(extractor.features, row)]}

    @app.post("/api/strip", response_class=Response, summary="One knob swept from −span to +span σ, as a PNG row",
              responses={200: {"content": {"image/png": {}},
                               "description": "the tiles left to right; header X-Strip-Values lists their σ values"},
                         422: ERROR})
    def strip(request: StripIn) -> Response:
        base = replayer.editor(request.seed, request.edit_list(), request.locks)
        axes.index(request.knob)
        values = [-request.span + 2 * request.span * i / (request.steps - 1) for i in range(request.steps)]
        latents = []
        for value in values:
            editor = replayer.new_editor(request.seed)
            editor.z, editor.locks, editor.exact = base.z.clone(), set(base.locks), request.exact
            editor.set(request.knob, value)
            latents.append(editor.latent())
        frames = renderer.render(torch.stack(latents))
        row = tile_row([upscale(p, request.size) for p in frames.pixels])
        return Response(png_bytes(row), media_type="image/png",
                        headers={"X-Strip-Values": json.dumps(values), "Cache-Control": "no-store"})

    return app


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A TCP socket bound to (host, port); port 0 picks a free one. TlganError when that is impossible."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise TlganError(f"cannot use host '{host}': {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise TlganError(f"cannot serve on {host}:{port}: {exc.strerror}; choose another --port") from None
    return sock


def ipaddress_is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False) -> None:
    """Run the app with uvicorn until Ctrl-C, on 127.0.0.1 unless told otherwise; optionally open a browser."""
    import threading

    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + shown_host + ']' if ':' in shown_host else shown_host}:{bound}/"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    print(f"tlgan: serving on {url} (Ctrl-C to stop)", flush=True)
    if not ipaddress_is_loopback(host):
        print(f"tlgan: listening on {host}: other machines can reach this app, and it has no authentication", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; stopping is the normal way out
        pass
    finally:
        sock.close()
    print("tlgan: stopped", flush=True)
