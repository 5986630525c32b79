"""The web app's photo panel: the API (upload, edit, paste back, delete, bad uploads) and the page in Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from webtools import LiveServer, StatsExtractor, web_model

from tlgan.apps.web import create_app
from tlgan.imaging import to_pil
from tlgan.sampling.latents import latent_for_seed

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    generator, _ = web_model()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (360, 480, 3), dtype=np.uint8))
    with torch.inference_mode():
        photo.paste(to_pil(generator.synthesize(latent_for_seed(1001, 100)[None])[0], 200), (220, 90))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    os.environ.setdefault("TLGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tlgan-cache"))
    generator, axes = web_model()
    return create_app(generator, axes, StatsExtractor())


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def test_upload_edit_paste_and_delete(client, photo_bytes) -> None:
    res = client.post("/api/photo?steps=3&tune=false", content=photo_bytes, headers={"Content-Type": "image/jpeg"})
    assert res.status_code == 200, res.text
    data = res.json()
    assert data["faces"] == 1 and (data["width"], data["height"]) == (480, 360)
    assert data["crop"].startswith("data:image/png;base64,") and data["reconstruction"].startswith("data:image/png")
    assert data["latent_file"]["format"] == "tlgan-latent" and data["quality"]["steps"] == 3
    kept = list(Path(tempfile.gettempdir()).glob(f"tlgan-photos-*/{data['token']}"))
    assert len(kept) == 1 and kept[0].read_bytes() == photo_bytes     # kept only in the app's temporary folder

    state = {"latent_file": data["latent_file"], "edits": [{"op": "set", "knob": "happy", "value": 1.5, "locks": []}]}
    res = client.post("/api/photo/render", json={**state, "size": 128})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(res.content)).size == (128, 128)
    names = [k["name"] for k in client.get("/api/model").json()["knobs"]]
    assert json.loads(res.headers["X-Knob-Values"])[names.index("happy")] == pytest.approx(1.5)

    res = client.post(f"/api/photo/{data['token']}/paste", json=state)
    assert res.status_code == 200 and res.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(res.content)).size == (480, 360)

    assert client.delete(f"/api/photo/{data['token']}").json() == {"deleted": True}
    assert not kept[0].exists()
    res = client.post(f"/api/photo/{data['token']}/paste", json=state)
    assert res.status_code == 422 and "upload it again" in res.json()["detail"]


def test_a_tuned_upload_renders_with_its_tuned_generator(client, photo_bytes) -> None:
    res = client.post("/api/photo?steps=3&tune_steps=4", content=photo_bytes, headers={"Content-Type": "image/jpeg"})
    assert res.status_code == 200, res.text
    data = res.json()
    assert data["latent_file"]["tuning"]["file"] == "photo.tune.safetensors"
    assert data["tuning"]["psnr_after_db"] > data["tuning"]["psnr_before_db"]
    state = {"latent_file": data["latent_file"], "edits": [], "size": 64}
    tuned = client.post("/api/photo/render", json={**state, "token": data["token"]})
    untuned = client.post("/api/photo/render", json=state)
    assert tuned.status_code == untuned.status_code == 200
    assert "X-Tlgan-Warning" not in tuned.headers and "untuned" in untuned.headers["X-Tlgan-Warning"]
    assert tuned.content != untuned.content
    file = client.get(f"/api/photo/{data['token']}/tuning")
    assert file.status_code == 200 and len(file.content) < 400 * 1024
    import hashlib

    assert hashlib.sha256(file.content).hexdigest() == data["latent_file"]["tuning"]["sha256"]
    res = client.post(f"/api/photo/{data['token']}/paste", json=state)
    assert res.status_code == 200 and "X-Tlgan-Warning" not in res.headers
    client.delete(f"/api/photo/{data['token']}")
    assert client.get(f"/api/photo/{data['token']}/tuning").status_code == 422


def test_bad_uploads_get_one_line_errors(client) -> None:
    rng = np.random.default_rng(1)
    noise = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(noise, "PNG")
    for body, message in [(b"hello", "not an image"), (noise.getvalue(), "no face found"), (b"", "no photo"),
                          (noise.getvalue()[:200], "truncated")]:
        res = client.post("/api/photo?steps=1", content=body)
        assert res.status_code == 422, res.text
        detail = res.json()["detail"]
        assert message in detail and "\n" not in detail
    res = client.post("/api/photo", content=b"x" * (16 * 1024 * 1024 + 1))
    assert res.status_code == 413
    res = client.post("/api/photo/render", json={"latent_file": {"format": "nope"}})
    assert res.status_code == 422 and "not a tlgan latent file" in res.json()["detail"]
    # Other endpoints keep the small body limit.
    assert client.post("/api/render", content=b"x" * (200 * 1024)).status_code == 413


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_page_upload_edit_and_download(app, photo_bytes, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    path = tmp_path / "me.jpg"
    path.write_bytes(photo_bytes)
    with LiveServer(app) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            # bypass_csp only so that Playwright may evaluate test snippets; the page runs under its CSP otherwise.
            page = browser.new_context(bypass_csp=True, accept_downloads=True).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url + "/?")
            page.wait_for_selector("#photo-drop", timeout=30000)
            page.route("**/api/photo?steps=*", lambda route: route.continue_(url=route.request.url.split("?")[0] + "?steps=2&tune_steps=3"))
            page.set_input_files("#photo-file", str(path))
            page.wait_for_selector("#photo-result:not([hidden])", timeout=300000)
            assert "dB PSNR" in page.text_content("#photo-quality")
            assert page.evaluate("document.getElementById('photo-crop').naturalWidth") == 256
            before = page.get_attribute("#photo-edited", "src")
            page.fill("#photo-knob-happy", "2")
            page.dispatch_event("#photo-knob-happy", "change")
            page.wait_for_function(f"document.getElementById('photo-edited').src !== {before!r}", timeout=60000)
            with page.expect_download(timeout=120000) as info:
                page.click("#photo-download")
            saved = tmp_path / "edited.jpg"
            info.value.save_as(saved)
            assert Image.open(saved).size == (480, 360)
            assert not errors, errors
        finally:
            browser.close()
