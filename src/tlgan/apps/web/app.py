"""The web app: a FastAPI API over the Editor, plus one static page that uses only that API.

Endpoints (OpenAPI at /openapi.json):
  GET  /api/model     knobs (names, kinds, groups, held-out R²), generator and extractor
  POST /api/render    seed + edits + locks -> PNG or WebP; knob values in the X-Knob-Values header
  POST /api/readings  seed + edits + locks -> knob values, the extractor's readings of the image, and identity
                      (how far the face is from the one it started as)
  POST /api/strip     one knob swept −span…+span σ from the current state -> one PNG row
  POST /api/check     seed + edits + locks -> how many of the edits replay, and why the next one does not
  /api/knobs          taught knobs: create/refit, suggest faces to label, shared, delete (see knobs.py)
Requests are stateless (the client holds the state; the server replays it),
so any state can be shared as a link. Bad input gets 422 with a one-line
``detail``; bodies over MAX_BODY_BYTES get 413; when more heavy requests are
queued than the server accepts, 503 with Retry-After. No endpoint reads a
path the client gives: the page's files are read once, at start-up.

Extensions add routes with ``create_app(..., routers=[...])``; a route finds
the models, replayer, renderer and work pool in ``request.app.state.tlgan``
(a WebContext), and should run model work through ``ctx.work.run``.
"""

import asyncio
import json
import math
import socket
import time
import webbrowser
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tlgan.axes.spaces import match_space
from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Editor
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator

from .frames import animation, encode_frame, png_bytes, tile_row, upscale
from .hardening import Hardening
from .leaks import LeakTable
from .report import read_report, report_route
from .info import ModelOut, ReadingsOut, check_display, error_response, model_info
from .limits import BodyLimit
from .knobs import include_knobs
from .photos import BODY_LIMITS, photo_router
from .renderer import BatchRenderer
from .schemas import MAX_BODY_BYTES, StateIn, knob_schemas
from .state import Replayer
from .work import Busy, WorkPool

MEDIA = {"png": "image/png", "webp": "image/webp"}
INLINE_ENCODE_PX = 128   # PNG frames up to this size are encoded on the event loop (the page's frames)
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
}
BAD = error_response("bad request: the one-line reason is in `detail` (also for bodies that are not JSON)",
                     "edits.0.knob: unknown feature 'hapy'; valid names: happy, yaw")
ERRORS: dict[int | str, dict[str, Any]] = {
    422: BAD,
    413: error_response("request body too large", "request body too large (200000 bytes); the limit is 131072 bytes"),
    503: error_response("too many requests queued; retry after the seconds in the Retry-After header",
                        "the server is busy (18 requests queued); retry in a moment"),
}


@dataclass
class WebContext:
    """What the app's routes share; extension routers find it in ``request.app.state.tlgan``."""

    generator: Generator
    axes: AxisSet
    extractor: Extractor | None
    replayer: Replayer
    renderer: BatchRenderer
    work: WorkPool
    schemas: dict[str, Any]
    info: dict[str, Any]

    def editor(self, state: StateIn) -> Editor:
        """The Editor a request's state names (replayed; raises TlganError)."""
        return self.replayer.editor(state.seed, state.edit_list(), state.locks, state.start())


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            where, message = "body", f"not valid JSON ({err.get('ctx', {}).get('error', 'decode error')} " \
                                     f"at character {loc[0] if loc else 0})"
        else:
            message = err.get("msg", "invalid")
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def state_json(request: Any) -> str:
    """The state a request names (seed, edits, locks), as compact JSON: what a PNG's metadata stores."""
    state = {"seed": request.seed, "edits": [e.to_edit().to_dict() for e in request.edits],
             "locks": sorted(set(request.locks))}
    if request.mix is not None:
        state["mix"] = request.mix.model_dump()
    return json.dumps(state, separators=(",", ":"))


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The page's scripts and style sheets, read once: {file name: (bytes, media type)}."""
    folder = resources.files("tlgan.apps.web") / "static"
    files = {}
    for entry in folder.iterdir():
        kind = next((t for ext, t in STATIC_TYPES.items() if entry.name.endswith(ext)), None)
        if kind and entry.is_file():
            files[entry.name] = (entry.read_bytes(), kind)
    return files


def create_app(generator: Generator, axes: AxisSet, extractor: Extractor | None, default_view: list[str] | None = None,
               display: dict[str, Any] | None = None, *, max_batch: int = 64, workers: int = 2,
               max_pending: int | None = None, routers: Sequence[APIRouter] = (),
               leaks_cache: str | Path | None = None, report: str | Path | None = None,
               shared: tuple[BatchRenderer, WorkPool, dict[str, Any]] | None = None, library: Any = None,
               teacher: str = "looks") -> FastAPI:
    """Build the app for one generator and axis set.

    Args:
        generator: the Generator, on the device it should render on.
        axes: the knobs (checked against the generator).
        extractor: gives live readings of the current image; None for none.
        default_view: knobs shown at first (the rest sit under "more knobs"); None shows all.
        display: optional page settings: ``title`` (str), ``labels`` ({knob: label}),
            ``weak_r2`` (knobs with held-out R² below it are marked weak, default 0.3),
            ``image_size`` (px of the main image, default 512).
        workers, max_pending: the WorkPool that runs model work (threads; requests in
            progress beyond which more get 503 with Retry-After).
        routers: extra APIRouters to include (they find a WebContext in ``app.state.tlgan``).
        leaks_cache: a folder where each knob's largest re-scoring leaks are cached (computed once in
            the background, see leaks.py); None: no leaks (GET /api/leaks says 'off').
        report: a folder written by ``tlgan evaluate --report``: read at start-up, served under /report/.
        shared: (renderer, work pool, host settings) shared with other knob sets' apps (create_multi_app);
            the caller then closes them.
        library: the ``tlgan.editing.library.KnobLibrary`` whose knobs for this generator are served and where
            knobs taught in the page are saved; None keeps taught knobs in memory only. Taught knobs join the
            served knob set (``ctx.replayer.axes``); ``ctx.axes`` stays the built-in set.
        teacher: how taught knobs are fitted: 'looks' (from the pictures, ``tlgan.editing.looks``),
            'sensitivity' (``tlgan.editing.prior``) or 'plain'.
    """
    axes.check_generator(generator)
    # A StyleGAN with axes made in its w / w+: serve the generator seen in that space (latents are centred w).
    generator, axes = match_space(generator, axes)
    if extractor is not None:
        extractor = extractor.eval().requires_grad_(False)
    shown = set(axes.names if default_view is None else default_view)
    for name in shown:
        axes.index(name)
    display = check_display(display, axes)
    info = model_info(generator, axes, extractor, shown, display)
    report_files = read_report(report) if report is not None else {}
    info["report"] = "report/index.html" if "index.html" in report_files else None  # relative: see create_multi_app
    page = (resources.files("tlgan.apps.web") / "static" / "index.html").read_text(encoding="utf-8")
    static = _static_files()
    replayer = Replayer(generator, axes, extractor=extractor)
    schemas = knob_schemas(lambda: replayer.axes.names)  # the knobs served now: built-in and taught
    renderer, work, hosts = shared if shared is not None else (
        BatchRenderer(generator, extractor, max_batch=max_batch), WorkPool(workers, max_pending), {"local_only": True})
    ctx = WebContext(generator, axes, extractor, replayer, renderer, work, schemas, info)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if shared is None:
            ctx.renderer.close()
            ctx.work.close()

    app = FastAPI(title="tlgan", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Edit a generator's images with one knob per feature. State is (seed, edits, locks); "
                              "every request carries it, so the API is stateless and any state can be shared.")
    app.state.tlgan = ctx
    app.state.renderer, app.state.replayer = ctx.renderer, ctx.replayer
    app.state.hardening = hosts   # serve() relaxes it when bound to a public address
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, overrides=BODY_LIMITS)
    app.add_middleware(Hardening, settings=app.state.hardening)
    include_knobs(app, library, teacher)  # taught knobs: /api/knobs; ctx.replayer.axes grows with them
    make_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        app.openapi_schema = None  # made afresh: its knob names grow with taught knobs
        return make_openapi()

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})
    app.include_router(photo_router(generator, axes, extractor))

    @app.exception_handler(TlganError)
    async def tlgan_error(_: Request, exc: TlganError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8)
            return JSONResponse({"detail": "body: not valid JSON (not UTF-8 text)"}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"server error: {type(exc).__name__}: {exc}"}, status_code=500)

    # ---- the page --------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    def static_route(name: str, data: bytes, kind: str) -> None:
        async def serve_file() -> Response:
            return Response(data, media_type=kind, headers=PAGE_HEADERS)
        app.add_api_route(f"/static/{name}", serve_file, methods=["GET"], include_in_schema=False,
                          name=f"static:{name}")

    for name, (data, kind) in sorted(static.items()):
        static_route(name, data, kind)

    for name, (data, kind) in sorted(report_files.items()):
        report_route(app, name, data, kind)

    # ---- the API: cheap answers on the event loop, model work on ctx.work -----------
    RenderIn, StripIn, CheckIn = schemas["RenderIn"], schemas["StripIn"], schemas["CheckIn"]

    @app.get("/api/model", response_model=ModelOut, summary="Model info: knobs, groups, quality")
    async def model() -> dict[str, Any]:
        served = ctx.replayer.axes  # the built-in knobs plus the taught ones (always shown)
        if served is axes:
            return info
        return {**info, **model_info(generator, served, extractor, shown | set(served.names[len(axes):]), display)}

    def knob_values(editor: Editor, exact: bool) -> dict[str, float]:
        """Every knob's value: in exact mode the standardised reading where the knob has one, else its σ."""
        values = editor.values()
        return {**values, **editor.exact_values()} if exact else values

    async def frame(request: Any, admitted: float, read: bool = False) -> tuple[Editor, Any]:
        """Replay the request's state on a worker, then wait (holding no worker) for the renderer."""
        editor = await ctx.work.call(admitted, ctx.editor, request)
        frames = await asyncio.wrap_future(ctx.renderer.submit(editor.latent()[None], read=read))
        return editor, frames

    @app.post("/api/render", response_class=Response, summary="Render a state as PNG or WebP",
              responses={200: {"content": {"image/png": {}, "image/webp": {}},
                               "description": "the image; header X-Knob-Values holds every knob's value in σ "
                                              "(JSON list in /api/model's knob order); an exact edit that "
                                              "ended short says why in X-Exact-Report and names the lock in "
                                              "the way in X-Exact-Blocked-By ('identity': keeping the person)"}, **ERRORS})
    async def render(request: RenderIn) -> Response:  # type: ignore[valid-type]
        async with ctx.work.slot() as admitted:
            start = time.perf_counter()
            editor, frames = await frame(request, admitted)
            text = {"tlgan": state_json(request), "Software": "tlgan"} if request.meta and request.format == "png" \
                else None
            if request.size <= INLINE_ENCODE_PX and request.format == "png":  # ~0.1 ms: not worth a thread hop
                data = encode_frame(frames.pixels[0], request.size, request.format, text)
            else:
                data = await ctx.work.call(admitted, encode_frame, frames.pixels[0], request.size, request.format,
                                           text)
            values = await ctx.work.call(admitted, knob_values, editor, True) if request.exact else editor.values()
        typical = editor.typicality()
        headers = {
            "X-Knob-Values": json.dumps([values[n] for n in editor.axes.names]),
            "X-Latent-Typicality": json.dumps({k: typical[k] for k in ("norm", "expected", "quantile", "warn")}),
            "Server-Timing": f"frame;dur={(time.perf_counter() - start) * 1000:.2f}",
            "Cache-Control": "no-store",
        }
        report = editor.last_report()
        if report is not None and not report["converged"]:
            headers["X-Exact-Report"] = json.dumps(report["message"])  # ASCII-escaped JSON string
            if report.get("blocked_by"):
                headers["X-Exact-Blocked-By"] = json.dumps(report["blocked_by"])  # e.g. "identity": the page says so
        return Response(data, media_type=MEDIA[request.format], headers=headers)

    @app.post("/api/readings", response_model=ReadingsOut, summary="Knob values and the extractor's readings",
              responses=ERRORS)
    async def readings(request: schemas["StateIn"]) -> dict[str, Any]:  # type: ignore[valid-type]
        async with ctx.work.slot() as admitted:
            if extractor is None:
                editor = await ctx.work.call(admitted, ctx.editor, request)
                identity = await ctx.work.call(admitted, ctx.replayer.identity, editor, request.seed, request.start())
                return {"values": editor.values(), "extractor": None, "readings": [],
                        "identity": identity["identity"], "identity_detail": identity["detail"]}
            editor, frames = await frame(request, admitted, read=True)
            identity = await ctx.work.call(admitted, ctx.replayer.identity, editor, request.seed, request.start())
        row = frames.readings[0]
        return {"values": editor.values(), "extractor": extractor.name, "typicality": editor.typicality(),
                "exact_values": editor.exact_values() if request.exact else None,
                "exact_report": editor.last_report(), "identity": identity["identity"],
                "identity_detail": identity["detail"], "readings": [
            {"name": f.name, "value": float(v) if math.isfinite(float(v)) else None, "kind": f.kind, "group": f.group}
            for f, v in zip(extractor.features, row)]}

    def strip_latents(request: Any, steps: int | None = None) -> tuple[list[float], torch.Tensor, list[dict]]:
        """(knob values, latents (steps, D), stops): ``stops`` lists the exact moves that ended short of their
        value, with the editor's message (how far it got, which lock is in the way)."""
        base = ctx.editor(request)
        steps = steps or request.steps
        values = [-request.span + 2 * request.span * i / (steps - 1) for i in range(steps)]
        latents, stops = [], []
        for value in values:
            editor = ctx.replayer.start(request.seed, request.start())  # its start face: the identity lock's
            editor.z, editor.locks, editor.exact = base.z.clone(), set(base.locks), request.exact
            editor.set(request.knob, value)
            report = editor.last_report() if request.exact else None
            if report and not report.get("converged", True):
                stops.append({"value": value, "message": report.get("message", "")})
            latents.append(editor.latent())
        return values, torch.stack(latents), stops

    def strip_png(pixels: Any, size: int) -> bytes:
        return png_bytes(tile_row([upscale(p, size) for p in pixels]))

    @app.post("/api/strip", response_class=Response, summary="One knob swept from −span to +span σ, as a PNG row",
              responses={200: {"content": {"image/png": {}},
                               "description": "the tiles left to right; header X-Strip-Values lists their σ values, "
                                              "X-Strip-Stops the exact moves that ended short, with why"},
                         **ERRORS})
    async def strip(request: StripIn) -> Response:  # type: ignore[valid-type]
        async with ctx.work.slot() as admitted:
            values, latents, stops = await ctx.work.call(admitted, strip_latents, request)
            frames = await asyncio.wrap_future(ctx.renderer.submit(latents))
            data = await ctx.work.call(admitted, strip_png, frames.pixels, request.size)
        return Response(data, media_type="image/png",
                        headers={"X-Strip-Values": json.dumps(values), "X-Strip-Stops": json.dumps(stops),
                                 "Cache-Control": "no-store"})

    def sweep_file(pixels: Any, request: Any) -> bytes:
        frames = [upscale(p, request.size) for p in pixels]
        return animation(frames + frames[-2:0:-1], request.format, request.frame_ms)  # there and back

    @app.post("/api/sweep", response_class=Response, summary="One knob swept −span…+span σ and back, animated",
              responses={200: {"content": {"image/gif": {}, "image/webp": {}},
                               "description": "a looping GIF or lossless WebP animation"}, **ERRORS})
    async def sweep(request: schemas["SweepIn"]) -> Response:  # type: ignore[valid-type]
        async with ctx.work.slot() as admitted:
            _, latents, _ = await ctx.work.call(admitted, strip_latents, request, request.frames)
            frames = await asyncio.wrap_future(ctx.renderer.submit(latents))
            data = await ctx.work.call(admitted, sweep_file, frames.pixels, request)
        return Response(data, media_type=f"image/{request.format}", headers={"Cache-Control": "no-store"})

    leak_table = LeakTable(generator, axes, extractor, Path(leaks_cache)) \
        if leaks_cache is not None and extractor is not None else None

    @app.get("/api/leaks", summary="Each knob's largest re-scoring leaks (what else it moves)")
    async def leaks() -> dict[str, Any]:
        """``status`` is 'computing' (ask again later), 'ready' (``leaks``: {knob: [{feature, effect}]},
        effects in feature SDs per σ of the knob), 'failed' (``detail``) or 'off'."""
        return leak_table.answer() if leak_table is not None else {"status": "off", "detail": None}

    def check_work(request: Any) -> dict[str, Any]:
        return ctx.replayer.check(request.seed, request.edit_list(), request.locks, request.start())

    @app.post("/api/check", summary="How much of a state replays: the valid edits and locks, and why the rest not",
              responses=ERRORS)
    async def check(request: CheckIn) -> dict[str, Any]:  # type: ignore[valid-type]
        """For links made elsewhere (other axes, hand-edited): knob names are plain strings here, and the
        answer says how many edits replay in order (``valid_edits``), the first failure's reason
        (``detail``, null when all replay), and which of the locks exist (``valid_locks``)."""
        return await ctx.work.run(check_work, request)

    for router in routers:
        app.include_router(router)
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


def configure_hosts(app: FastAPI, host: str) -> None:
    """Bound to loopback, the app answers only to local Host names (against DNS rebinding); bound to another
    address (e.g. 0.0.0.0) it is meant to be reached under any name."""
    if hasattr(app.state, "hardening"):
        app.state.hardening["local_only"] = ipaddress_is_loopback(host)


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False) -> None:
    """Run the app with uvicorn until Ctrl-C, on 127.0.0.1 unless told otherwise; optionally open a browser."""
    import threading

    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + shown_host + ']' if ':' in shown_host else shown_host}:{bound}/"
    configure_hosts(app, host)
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
