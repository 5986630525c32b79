"""The web app's photo panel: upload a photo, invert its face, edit it with the knobs, download it pasted back.

Endpoints:
  POST   /api/photo                 body: the image file's bytes (at most MAX_UPLOAD_BYTES); query face, steps,
                                    tune, tune_steps -> token, the latent file, quality, tuning, the aligned crop
                                    and reconstruction (PNG data URLs; the tuned one when tuned)
  POST   /api/photo/render          {latent_file, edits, locks, size, token} -> PNG of the edited face (X-Knob-Values)
  POST   /api/photo/{token}/paste   {latent_file, edits, locks} -> the whole photo, edited face pasted back (JPEG)
  GET    /api/photo/{token}/tuning  the photo's tuning file (safetensors), to keep beside the latent file
  DELETE /api/photo/{token}         forget the upload now
A tuned photo (pivotal tuning, tlgan.photos.tune) renders with its tuned generator whenever the request names
its token and the server still holds its tuning; otherwise the untuned latent is rendered and the response
carries an ``X-Tlgan-Warning`` header.
  GET    /static/photo.js           the panel's script
Uploads are decoded by tlgan.photos (format whitelist, pixel limit) before being kept; kept photos live only
in this app's own temporary folder (removed when the app stops), under random names, at most KEEP at a
time (the oldest is deleted first), and are deleted on DELETE.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from tlgan.axes.store import AxisSet
from tlgan.editing.editor import Editor
from tlgan.errors import TlganError
from tlgan.models.extractors import Extractor
from tlgan.models.generators import Generator

from .info import error_response
from .schemas import MAX_EDITS, MAX_LOCKS, EditIn

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
MAX_STEPS = 1000
DEFAULT_STEPS = 200
DEFAULT_TUNE_STEPS = 100
TUNED_IN_MEMORY = 2   # tuned generators kept ready (the tunings themselves are small and kept for every upload)
KEEP = 8
ERRORS: dict[int | str, dict[str, Any]] = {422: error_response("bad request or photo: the one-line reason is in "
                                                               "`detail`", "no face found in the photo")}
PREFIX = "/api/photo"
BODY_LIMITS = {PREFIX: MAX_UPLOAD_BYTES}   # per-path body limits for the app's BodyLimit middleware


# its own schema name: the app's EditIn (knob names as an enum) is another model
PhotoEditIn = create_model("PhotoEditIn", __base__=EditIn, __doc__=EditIn.__doc__)


class PhotoStateIn(BaseModel):
    """An inverted face and the edits made to it: the latent file as 'tlgan invert' writes it, edits, locks."""

    model_config = ConfigDict(extra="forbid")
    latent_file: dict[str, Any]
    edits: list[PhotoEditIn] = Field(default_factory=list, max_length=MAX_EDITS)  # type: ignore[valid-type]
    locks: list[str] = Field(default_factory=list, max_length=MAX_LOCKS)
    size: int = Field(256, ge=16, le=1024, strict=True)
    token: str | None = Field(None, max_length=64)   # the upload's token: its tuned generator is used


class _Store:
    """Uploaded photos kept as files in one private temporary folder: token -> path, oldest evicted first."""

    def __init__(self, keep: int = KEEP) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tlgan-photos-"))
        self.keep = keep
        self.items: OrderedDict[str, Path] = OrderedDict()
        self.tunings: dict[str, Any] = {}                      # token -> TuningFile (small)
        self.tuned: OrderedDict[str, Any] = OrderedDict()      # token -> tuned generator, at most TUNED_IN_MEMORY
        self.lock = threading.Lock()

    def put(self, data: bytes) -> str:
        token = secrets.token_urlsafe(16)
        path = self.folder / token
        path.write_bytes(data)
        with self.lock:
            self.items[token] = path
            while len(self.items) > self.keep:
                gone, old = self.items.popitem(last=False)
                old.unlink(missing_ok=True)
                self.tunings.pop(gone, None)
                self.tuned.pop(gone, None)
        return token

    def put_tuning(self, token: str, tuning: Any, generator: Any) -> None:
        with self.lock:
            if token in self.items:
                self.tunings[token] = tuning
                self._remember(token, generator)

    def _remember(self, token: str, generator: Any) -> None:
        self.tuned[token] = generator
        self.tuned.move_to_end(token)
        while len(self.tuned) > TUNED_IN_MEMORY:
            self.tuned.popitem(last=False)

    def tuning(self, token: str) -> Any:
        with self.lock:
            return self.tunings.get(token)

    def tuned_generator(self, token: str, build: Any) -> Any:
        """The token's tuned generator, built by ``build()`` (once) when it is not in memory."""
        with self.lock:
            if token in self.tuned:
                self.tuned.move_to_end(token)
                return self.tuned[token]
        generator = build()
        with self.lock:
            if token in self.items:
                self._remember(token, generator)
        return generator

    def get(self, token: str) -> bytes:
        with self.lock:
            path = self.items.get(token)
        if path is None or not path.is_file():
            raise TlganError("this photo is no longer on the server (uploads are kept briefly); upload it again")
        return path.read_bytes()

    def delete(self, token: str) -> bool:
        with self.lock:
            path = self.items.pop(token, None)
            self.tunings.pop(token, None)
            self.tuned.pop(token, None)
        if path is not None:
            path.unlink(missing_ok=True)
        return path is not None

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _data_url(image: Any) -> str:
    from tlgan.imaging import encode, to_pil

    return "data:image/png;base64," + base64.b64encode(encode(to_pil(image, 256))).decode()


def _identity_or_none(device: Any) -> Any:
    """The identity model for the inversion's identity term, or None where its weights are not installed."""
    from tlgan.models.extractors.identity import load_identity

    try:
        return load_identity(device)
    except TlganError:
        return None


def photo_router(generator: Generator, axes: AxisSet, extractor: Extractor | None) -> APIRouter:
    """The photo endpoints for one generator and axis set (the extractor gives the perceptual term)."""
    from tlgan.photos.latentfile import check_for, parse_latent_file
    from tlgan.models.extractors.mtcnn import load_mtcnn

    param = next(generator.parameters(), None)
    device = param.device if param is not None else "cpu"
    detectors: list[Any] = []   # loaded at the first upload
    store = _Store()
    weakref.finalize(store, shutil.rmtree, str(store.folder), True)   # the folder goes when the app does
    work = threading.Lock()   # one inversion at a time: it uses every core
    router = APIRouter()
    router.store = store  # type: ignore[attr-defined]
    script = (resources.files("tlgan.apps.web") / "static" / "photo.js").read_bytes()

    def generator_for(latent_file: Any, token: str | None) -> tuple[Any, str | None]:
        """(the generator to render this latent with, a warning or None): the tuned one for a tuned upload."""
        if not latent_file.tuning:
            return generator, None
        tuning = store.tuning(token) if token else None
        if tuning is None:
            return generator, "this photo's tuning is not on the server (upload it again): showing the untuned latent"
        from tlgan.photos.pipeline import tuned_generator
        from tlgan.photos.tunefile import file_sha256_bytes

        if file_sha256_bytes(tuning.to_bytes()) != latent_file.tuning["sha256"]:
            raise TlganError("the latent file's tuning is not this upload's: send the latent file the upload returned")
        return store.tuned_generator(token, lambda: tuned_generator(latent_file, generator, tuning)), None

    def editor_for(state: PhotoStateIn, token: str | None = None) -> tuple[Editor, Any, str | None]:
        latent_file = parse_latent_file(json.dumps(state.latent_file), "latent file")
        check_for(latent_file, generator, axes.latent_space)
        gen, warning = generator_for(latent_file, token or state.token)
        editor = Editor.replay(gen, axes, 0, [e.to_edit() for e in state.edits], state.locks,
                               latent=latent_file.latent)
        return editor, latent_file, warning

    @router.get("/static/photo.js", include_in_schema=False)
    def photo_script() -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    @router.post(PREFIX, summary="Upload a photo: find, align and invert its face", responses=ERRORS)
    async def upload(request: Request, face: int | None = Query(None, ge=0, le=100),
                     steps: int = Query(DEFAULT_STEPS, ge=0, le=MAX_STEPS), tune: bool = Query(True),
                     tune_steps: int = Query(DEFAULT_TUNE_STEPS, ge=0, le=MAX_STEPS)) -> dict[str, Any]:
        from dataclasses import replace

        from starlette.concurrency import run_in_threadpool

        from tlgan.photos import open_photo
        from tlgan.photos.pipeline import TUNE_IDENTITY_WEIGHT, invert_photo, tune_photo
        from tlgan.photos.tune import TuneSettings
        from tlgan.photos.tunefile import file_sha256_bytes

        data = await request.body()
        if not data:
            raise TlganError("no photo in the request body: send the image file's bytes")

        def run() -> Any:
            photo = open_photo(data, max_pixels=MAX_UPLOAD_PIXELS, max_bytes=MAX_UPLOAD_BYTES, name="the upload")
            with work:
                if not detectors:
                    detectors.append(load_mtcnn(device))
                    detectors.append(_identity_or_none(device))
                result = invert_photo(photo, generator, detectors[0], extractor, face=face, steps=steps,
                                      identity_model=detectors[1])
                tuned = None
                if tune:
                    settings = TuneSettings(steps=tune_steps,
                                            identity_weight=TUNE_IDENTITY_WEIGHT if detectors[1] is not None else 0.0)
                    tuned = tune_photo(photo, result.latent_file, generator, extractor, settings=settings,
                                       identity_model=detectors[1])
                return photo, result, tuned

        photo, result, tuned = await run_in_threadpool(run)
        token = store.put(data)
        reconstruction = result.inversion.image
        latent = result.latent_file
        gen = generator
        if tuned is not None:
            tuning, tuning_file = tuned
            latent = replace(latent, tuning={"file": "photo.tune.safetensors",
                                             "sha256": file_sha256_bytes(tuning_file.to_bytes())})
            store.put_tuning(token, tuning_file, tuning.generator)
            gen = tuning.generator
            import torch

            with torch.no_grad():
                reconstruction = gen.synthesize(latent.latent[None].to(device))[0].float().cpu()
        latent_file = json.loads(latent.to_json())
        editor = Editor(gen, axes, 0)
        editor.new_latent(latent.latent)
        return {"token": token, "latent_file": latent_file, "quality": latent_file["quality"],
                "tuning": tuned[0].quality() if tuned is not None else None,
                "faces": result.faces, "width": photo.size[0], "height": photo.size[1],
                "crop": _data_url(result.crop), "reconstruction": _data_url(reconstruction),
                "values": editor.values()}

    @router.post(PREFIX + "/render", response_class=Response, summary="The inverted face after edits, as PNG", responses=ERRORS)
    def render(state: PhotoStateIn) -> Response:
        from tlgan.imaging import encode, to_pil

        editor, _, warning = editor_for(state)
        values = editor.values()
        headers = {"X-Knob-Values": json.dumps([values[n] for n in axes.names]), "Cache-Control": "no-store"}
        if warning:
            headers["X-Tlgan-Warning"] = warning
        return Response(encode(to_pil(editor.render(), state.size)), media_type="image/png", headers=headers)

    @router.post(PREFIX + "/{token}/paste", response_class=Response, summary="The photo with the edited face, as JPEG", responses=ERRORS)
    def paste(token: str, state: PhotoStateIn) -> Response:
        from tlgan.photos.pipeline import paste_into
        from tlgan.photos import encode_photo, open_photo

        data = store.get(token)
        editor, latent_file, warning = editor_for(state, token)
        photo = open_photo(data, max_pixels=MAX_UPLOAD_PIXELS, max_bytes=MAX_UPLOAD_BYTES, name="the upload")
        image, _ = paste_into(photo, latent_file, editor.render())
        headers = {"Content-Disposition": 'attachment; filename="edited.jpg"', "Cache-Control": "no-store"}
        if warning:
            headers["X-Tlgan-Warning"] = warning
        return Response(encode_photo(image, photo.icc_profile), media_type="image/jpeg", headers=headers)

    @router.get(PREFIX + "/{token}/tuning", response_class=Response, summary="The photo's tuning file (safetensors)",
                responses=ERRORS)
    def tuning_file(token: str) -> Response:
        tuning = store.tuning(token)
        if tuning is None:
            raise TlganError("this photo has no tuning on the server (not tuned, or no longer kept)")
        return Response(tuning.to_bytes(), media_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="photo.tune.safetensors"',
                                 "Cache-Control": "no-store"})

    @router.delete(PREFIX + "/{token}", summary="Delete an uploaded photo now", responses=ERRORS)
    def forget(token: str) -> dict[str, bool]:
        return {"deleted": store.delete(token)}

    return router
