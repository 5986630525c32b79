"""The page, driven in Debian's headless Chromium against the real server on a free loopback port."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import time
import urllib.parse

import httpx
import numpy as np
import pytest
from PIL import Image
from webtools import LiveServer, StatsExtractor, decode, web_model

from tlgan.apps.web import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOWN = ["happy", "surprise", "yaw", "brightness", "warmth"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def server():
    generator, axes = web_model()
    app = create_app(generator, axes, StatsExtractor(), default_view=SHOWN)
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _context(browser, width=1280, height=800):
    # bypass_csp lets Playwright evaluate test snippets; the page itself runs under its CSP in real use.
    return browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True, accept_downloads=True)


@pytest.fixture
def page(browser):
    context = _context(browser)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# ---- helpers ----------------------------------------------------------------------
def idle(page):
    page.wait_for_selector("body[data-idle=true]", state="attached", timeout=15000)


def open_page(page, url):
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=15000)
    idle(page)


def shown_bytes(page) -> bytes:
    b64 = page.evaluate("""async () => {
        const blob = await (await fetch(document.getElementById('face').src)).blob();
        return await new Promise((done) => { const r = new FileReader(); r.onload = () => done(r.result.split(',')[1]); r.readAsDataURL(blob); });
    }""")
    return base64.b64decode(b64)


def value_of(page, knob) -> float:
    text = page.locator(f".knob[data-knob={knob}] .value").input_value()
    return float(text.replace("−", "-").replace("σ", ""))


def state_from_url(url: str) -> dict:
    """The page's #fragment decoded in Python (seed=…&locks=a,b&edits=s:knob:value:locks;…)."""
    fields = dict(part.split("=", 1) for part in urllib.parse.urlsplit(url).fragment.split("&") if part)
    names = lambda text: [urllib.parse.unquote(n) for n in text.split(",") if n]  # noqa: E731
    edits = []
    for item in filter(None, fields.get("edits", "").split(";")):
        op, knob, value, locks = item.split(":")
        edits.append({"op": {"s": "set", "d": "step"}[op], "knob": urllib.parse.unquote(knob), "value": float(value),
                      "locks": names(locks)})
    return {"seed": int(fields["seed"]), "edits": edits, "locks": names(fields.get("locks", ""))}


def drag_slider(page, knob, fraction, steps=12):
    """Drag a knob's slider thumb with the mouse to ``fraction`` (0..1) of its track."""
    slider = page.locator(f".knob[data-knob={knob}] input[type=range]")
    box = slider.bounding_box()
    value = float(slider.input_value())
    lo, hi = float(slider.get_attribute("min")), float(slider.get_attribute("max"))
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 8 + (box["width"] - 16) * (value - lo) / (hi - lo), y)
    page.mouse.down()
    page.mouse.move(box["x"] + 8 + (box["width"] - 16) * fraction, y, steps=steps)
    page.mouse.up()


# ---- tests ------------------------------------------------------------------------
def test_page_loads_the_knobs(page, server):
    open_page(page, server.url + "/#seed=12")
    names = page.locator(".knob").evaluate_all("rows => rows.map(r => r.dataset.knob)")
    assert names == SHOWN + ["noise"]
    assert page.locator(".group h2").all_inner_texts()[:3] == ["EXPRESSION", "POSE", "LIGHTING AND COLOUR"]
    weak = page.locator(".knob:has(.weak)").evaluate_all("rows => rows.map(r => r.dataset.knob)")
    assert weak == ["surprise", "noise"]
    truth = httpx.post(server.url + "/api/render", json={"seed": 12, "size": 64}).headers["x-knob-values"]
    for name, value in zip(SHOWN, eval(truth)):
        assert value_of(page, name) == pytest.approx(value, abs=0.006)
    page.wait_for_function("document.querySelector('.knob[data-knob=brightness] .reading').textContent !== ''")
    readings = httpx.post(server.url + "/api/readings", json={"seed": 12}).json()["readings"]
    assert page.locator(".knob[data-knob=brightness] .reading").inner_text().split()[-1] == f"{readings[0]['value']:.2f}"
    assert page.locator(".knob[data-knob=brightness] .reading").evaluate("e => e.textContent").startswith("reads ")
    assert "contrast" in page.locator("#other-readings").inner_text()


def test_dragging_a_slider_changes_image_and_value_and_asks_only_for_the_newest_state(page, server):
    open_page(page, server.url + "/#seed=5")
    before = shown_bytes(page)
    flights, most = [0], [0]

    def started(request):
        if request.url.endswith("/api/render"):
            flights[0] += 1
            most[0] = max(most[0], flights[0])

    def ended(request):
        if request.url.endswith("/api/render"):
            flights[0] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    drag_slider(page, "happy", 0.85, steps=25)
    idle(page)
    target = float(page.locator(".knob[data-knob=happy] input[type=range]").input_value())
    assert target > 2.0
    assert value_of(page, "happy") == pytest.approx(target, abs=0.006)
    after = shown_bytes(page)
    assert after != before
    state = state_from_url(page.url)
    assert len(state["edits"]) == 1 and state["edits"][0]["knob"] == "happy"  # one drag, one edit
    # the page asks for frames at the generator's own size (64 px), the lightest reproducible image
    assert httpx.post(server.url + "/api/render", json={**state, "size": 64}).content == after
    assert most[0] == 1, "the page had several render requests in flight at once"


def test_lock_holds_the_locked_knob(page, server):
    open_page(page, server.url + "/#seed=8")
    page.click(".knob[data-knob=brightness] .lock")
    assert "locked" in page.locator(".knob[data-knob=brightness]").get_attribute("class")
    brightness, warmth = value_of(page, "brightness"), value_of(page, "warmth")
    drag_slider(page, "warmth", 0.1)
    idle(page)
    assert value_of(page, "warmth") < warmth - 0.5
    assert value_of(page, "brightness") == brightness
    state = state_from_url(page.url)
    assert state["locks"] == ["brightness"] and state["edits"][-1]["locks"] == ["brightness"]
    values = eval(httpx.post(server.url + "/api/render", json=state).headers["x-knob-values"])
    plain = eval(httpx.post(server.url + "/api/render", json={"seed": 8}).headers["x-knob-values"])
    assert values[3] == pytest.approx(plain[3], abs=1e-9)
    # the locked knob's own controls refuse to move it
    page.click(".knob[data-knob=brightness] .plus")
    assert "locked" in page.locator("#toast").inner_text()
    assert state_from_url(page.url) == state


def test_buttons_and_keyboard(page, server):
    open_page(page, server.url + "/#seed=3")
    first = shown_bytes(page)
    page.click("#random")
    idle(page)
    seed = state_from_url(page.url)["seed"]
    assert seed != 3 and shown_bytes(page) != first
    start = value_of(page, "happy")
    page.click(".knob[data-knob=happy] .plus")
    idle(page)
    assert value_of(page, "happy") == pytest.approx(start + 0.4, abs=0.011)
    page.click("#undo")
    idle(page)
    assert value_of(page, "happy") == pytest.approx(start, abs=0.006)
    page.click("#redo")
    idle(page)
    assert value_of(page, "happy") == pytest.approx(start + 0.4, abs=0.011)
    page.click("#reset")
    idle(page)
    assert state_from_url(page.url)["edits"] == [] and value_of(page, "happy") == pytest.approx(start, abs=0.006)
    # keyboard: arrows step the focused knob, l locks it, r draws a new face
    page.focus(".knob[data-knob=yaw] input[type=range]")
    yaw = value_of(page, "yaw")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    idle(page)
    assert value_of(page, "yaw") == pytest.approx(yaw + 0.8, abs=0.011)
    page.keyboard.press("ArrowLeft")
    idle(page)
    assert value_of(page, "yaw") == pytest.approx(yaw + 0.4, abs=0.011)
    page.keyboard.press("l")
    assert state_from_url(page.url)["locks"] == ["yaw"]
    page.keyboard.press("r")
    idle(page)
    state = state_from_url(page.url)
    assert state["seed"] != seed and state["edits"] == [] and state["locks"] == ["yaw"]


def test_share_link_reproduces_the_same_image_bytes(browser, page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    open_page(page, server.url + "/#seed=21")
    page.click(".knob[data-knob=yaw] .lock")
    drag_slider(page, "happy", 0.8)
    idle(page)
    page.click(".knob[data-knob=warmth] .minus")
    idle(page)
    page.click("#share")
    link = page.locator("#share-url").input_value()
    assert link == page.url and page.evaluate("navigator.clipboard.readText()") == link
    original = shown_bytes(page)
    context = _context(browser, 900, 700)
    try:
        other = context.new_page()
        open_page(other, link)
        assert shown_bytes(other) == original
        assert state_from_url(other.url) == state_from_url(link)
        assert other.locator(".knob[data-knob=yaw]").get_attribute("class").count("locked") == 1
    finally:
        context.close()


def test_download_is_a_png_of_the_shown_image(page, server, tmp_path):
    open_page(page, server.url + "/#seed=33")
    page.click(".knob[data-knob=brightness] .plus")
    idle(page)
    with page.expect_download() as info:
        page.click("#download")
    path = tmp_path / "face.png"
    info.value.save_as(path)
    assert info.value.suggested_filename == "tlgan-face-33.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (512, 512)
    state = state_from_url(page.url)
    assert path.read_bytes() == httpx.post(server.url + "/api/render", json={**state, "size": 512}).content
    assert np.array_equal(decode(shown_bytes(page)), decode(httpx.post(server.url + "/api/render", json={**state, "size": 64}).content))
    page.select_option("#export-size", "256")
    with page.expect_download() as info:
        page.click("#download")
    info.value.save_as(path)
    with Image.open(path) as image:
        assert image.size == (256, 256)


def test_errors_are_shown_to_the_user(page, server):
    # a link the server refuses (unknown knob): the server's 422 message is shown
    open_page(page, server.url + "/#seed=3&edits=s:nosuch:1:")
    assert page.locator("#error").is_visible()
    assert "unknown feature 'nosuch'" in page.locator("#error-text").inner_text()
    # a good state, then a link whose edit the server refuses: message shown, the page keeps the last good state
    page.goto(server.url + "/#seed=4&edits=s:happy:1.5:")  # same document: the hash changes
    idle(page)
    assert page.locator("#error").is_hidden()
    good = page.url
    page.evaluate("location.hash = '#seed=4&edits=s:happy:1.5:;s:happy:2:happy'")
    page.wait_for_selector("#error:not([hidden])")
    assert "locked" in page.locator("#error-text").inner_text()
    idle(page)
    page.wait_for_function(f"location.href === {good!r}")
    # out of range: + at the top of the scale is refused, not clamped
    page.locator(".knob[data-knob=surprise] input[type=range]").fill("3.9")
    idle(page)
    page.click(".knob[data-knob=surprise] .plus")
    assert re.search(r"range is ±4σ", page.locator("#error-text").inner_text())
    assert value_of(page, "surprise") == pytest.approx(3.9, abs=0.006)
    # a failing server (500) and an unreachable one
    page.route("**/api/render", lambda route: route.fulfill(status=500, content_type="application/json",
                                                             body='{"detail": "server error: RuntimeError: boom"}'))
    page.click("#random")
    page.wait_for_function("document.getElementById('error-text').textContent.includes('boom')")
    page.unroute("**/api/render")
    page.route("**/api/render", lambda route: route.abort())
    page.click("#random")
    page.wait_for_function("document.getElementById('error-text').textContent.includes('cannot reach')")
    # a malformed link
    page.unroute("**/api/render")
    page.goto("about:blank")
    open_page(page, server.url + "/#seed=abc")
    assert page.locator("#error").is_visible()
    assert "malformed" in page.locator("#error-text").inner_text()
    assert state_from_url(page.url)["seed"] >= 0  # and a random face is shown instead


def test_strip_and_gallery(page, server):
    open_page(page, server.url + "/#seed=40")
    page.click(".knob[data-knob=brightness] .strip-btn")
    page.wait_for_function("document.querySelector('#strip .strip-img').naturalWidth > 0")
    strip = page.locator("#strip .strip-img")
    assert strip.evaluate("img => img.naturalWidth") == 7 * 96 + 6 * 2
    box = strip.bounding_box()
    page.mouse.click(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2)
    idle(page)
    assert value_of(page, "brightness") == pytest.approx(3.0, abs=0.006)
    page.click("#gallery-toggle")
    page.wait_for_function("[...document.querySelectorAll('#gallery-grid img')].filter(i => i.naturalWidth === 128).length === 12")
    thumb = page.locator("#gallery-grid .thumb").nth(2)
    seed = int(thumb.get_attribute("data-seed"))
    thumb_png = thumb.locator("img").evaluate("""async (img) => {
        const blob = await (await fetch(img.src)).blob();
        return await new Promise((done) => { const r = new FileReader(); r.onload = () => done(r.result.split(',')[1]); r.readAsDataURL(blob); });
    }""")
    assert base64.b64decode(thumb_png) == httpx.post(server.url + "/api/render", json={"seed": seed, "size": 128}).content
    thumb.click()
    idle(page)
    assert page.locator("#gallery").is_hidden()
    assert state_from_url(page.url) == {"seed": seed, "edits": [], "locks": []}


def test_page_runs_under_its_own_content_security_policy(browser, server):
    context = browser.new_context()  # no bypass: the page's CSP applies
    try:
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: messages.append(str(exc)))
        page.goto(server.url + "/#seed=2")
        page.wait_for_selector("body[data-ready=true][data-idle=true]", state="attached", timeout=15000)
        page.click(".knob[data-knob=happy] .plus")
        page.click(".knob[data-knob=warmth] .strip-btn")
        page.wait_for_selector("#strip .strip-img[src^=blob]", state="attached")
        page.wait_for_selector("body[data-idle=true]", state="attached")
        assert page.locator(".knob[data-knob=happy] .value").input_value() != ""
        assert messages == []
    finally:
        context.close()


def test_phone_width(browser, server):
    context = _context(browser, 390, 844)
    try:
        page = context.new_page()
        open_page(page, server.url + "/#seed=9")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        face = page.locator("#face").bounding_box()
        assert face["width"] >= 0.33 * 844 and face["x"] >= 0 and face["x"] + face["width"] <= 390
        # the face stays in view while the last knob is used
        page.locator(".knob[data-knob=warmth] .plus").scroll_into_view_if_needed()
        page.click(".knob[data-knob=warmth] .plus")
        idle(page)
        face = page.locator("#face").bounding_box()
        warmth = page.locator(".knob[data-knob=warmth]").bounding_box()
        assert face["y"] >= 0 and face["y"] + face["height"] <= warmth["y"]
        for knob in SHOWN:
            row = page.locator(f".knob[data-knob={knob}]").bounding_box()
            assert row["x"] >= 0 and row["x"] + row["width"] <= 390
    finally:
        context.close()
