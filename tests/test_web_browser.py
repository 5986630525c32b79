"""The page, driven in Debian's headless Chromium against the real server on a free loopback port."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
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
    assert path.read_bytes() == httpx.post(server.url + "/api/render", json={**state, "size": 512, "meta": True}).content
    with Image.open(path) as image:
        assert json.loads(image.text["tlgan"]) == state  # the edits travel inside the file
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
    # the strip follows the face: it may be fetched again once the first render lands, so wait for the one shown
    # to be complete at the size asked for (a timeout here is the failure)
    page.wait_for_function(f"(() => {{ const i = document.querySelector('#strip .strip-img');"
                           f" return i && i.complete && i.naturalWidth === {7 * 96 + 6 * 2}; }})()")
    strip = page.locator("#strip .strip-img")
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


# ---- issue 13: each defect, as a user meets it ------------------------------------------------
AXE = os.path.join(os.path.dirname(__file__), "..", "node_modules", "axe-core", "axe.min.js")


def settle(page):
    """Let a resize or scroll take effect (two animation frames)."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def in_view(page, selector) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5 \
        and box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5


def test_messages_never_shift_the_layout(page, server):
    open_page(page, server.url + "/#seed=11")
    page.locator(".knob[data-knob=surprise] .value").fill("3.1")
    page.keyboard.press("Enter")
    idle(page)
    plus = page.locator(".knob[data-knob=surprise] .plus").bounding_box()
    layout = page.evaluate("[...document.querySelectorAll('.knob')].map(r => r.getBoundingClientRect().top)")
    x, y = plus["x"] + plus["width"] / 2, plus["y"] + plus["height"] / 2
    for _ in range(8):  # the third click would pass +4σ: refused, with a message
        page.mouse.click(x, y)
        idle(page)
    assert page.locator("#error").is_visible() and "range is ±4σ" in page.locator("#error-text").inner_text()
    assert page.evaluate("[...document.querySelectorAll('.knob')].map(r => r.getBoundingClientRect().top)") == layout
    assert page.locator(".knob[data-knob=surprise] .plus").bounding_box() == plus
    state = state_from_url(page.url)
    assert {e["knob"] for e in state["edits"]} == {"surprise"} and value_of(page, "surprise") <= 4.0
    # and the message does not cover the knobs' buttons it is about
    assert page.evaluate("getComputedStyle(document.querySelector('.messages')).position") == "fixed"


WIDTHS = [320, 360, 390, 414, 480, 600, 699, 700, 768, 820, 821, 900, 1000, 1024, 1140, 1280, 1440, 1920, 2560]
LANDSCAPE = [(568, 320), (667, 375), (844, 390), (932, 430), (1024, 600)]


def test_no_horizontal_overflow_at_any_width_and_landscape_phones_fit(browser, server):
    context = _context(browser, 1280, 800)
    try:
        page = context.new_page()
        open_page(page, server.url + "/#seed=9")
        page.click(".knob[data-knob=warmth] .strip-btn")  # the strip open too
        page.wait_for_selector("#strip .strip-img[src^=blob]", state="attached")
        for width, height in [(w, 800) for w in WIDTHS] + LANDSCAPE:
            page.set_viewport_size({"width": width, "height": height})
            settle(page)
            over = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert over <= 0, f"{over} px of horizontal overflow at {width}×{height}"
            outside = page.evaluate("""(w) => [...document.querySelectorAll('.knob > *, .bar button, #strip')]
                .filter(e => e.offsetParent && (e.getBoundingClientRect().right > w + 0.5 || e.getBoundingClientRect().left < -0.5))
                .map(e => e.className || e.id)""", width)
            assert outside == [], f"cut off at {width}×{height}: {outside}"
            if height < width:  # landscape: the face fits the height, under the toolbar
                page.evaluate("window.scrollTo(0, 0)")
                settle(page)
                face = page.locator("#face").bounding_box()
                bar = page.locator(".bar").bounding_box()
                assert face["y"] >= bar["y"] + bar["height"] - 0.5 and face["y"] + face["height"] <= height, (width, height)
    finally:
        context.close()


def test_phone_results_appear_in_view_and_the_toolbar_stays(browser, server):
    context = _context(browser, 390, 844)
    try:
        page = context.new_page()
        open_page(page, server.url + "/#seed=9")
        page.locator(".knob[data-knob=noise]").scroll_into_view_if_needed()  # under "More knobs": open it
        page.click(".more > summary")
        page.locator(".knob[data-knob=noise] .strip-btn").scroll_into_view_if_needed()
        assert page.evaluate("window.scrollY") > 300
        page.click(".knob[data-knob=noise] .strip-btn")
        page.wait_for_selector("#strip .strip-img[src^=blob]", state="attached")
        settle(page)
        assert in_view(page, "#strip .strip-img"), page.locator("#strip").bounding_box()
        for button in ("#undo", "#random", "#share"):
            assert in_view(page, button), button
        # a refused move of a scrolled-to knob: the message is on screen
        page.locator(".knob[data-knob=noise] .value").fill("3.9")
        page.keyboard.press("Enter")
        idle(page)
        page.click(".knob[data-knob=noise] .plus")
        page.wait_for_selector("#error:not([hidden])")
        assert in_view(page, "#error")
        page.click("#undo")
        idle(page)
        assert value_of(page, "noise") != pytest.approx(3.9, abs=0.01)
    finally:
        context.close()


def test_share_box_is_never_stale(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    open_page(page, server.url + "/#seed=6")
    page.click("#share")
    assert page.locator("#share-url").input_value() == page.url
    page.click(".knob[data-knob=happy] .plus")
    idle(page)
    page.click(".knob[data-knob=yaw] .lock")
    assert page.locator("#share-url").input_value() == page.url and "happy" in page.url and "locks=yaw" in page.url
    page.click("#undo")
    idle(page)
    assert page.locator("#share-url").input_value() == page.url


BAD_LINKS = [
    ("#seed=5&edits=s:nosuch:1:", 0, ["nosuch", "Showing face #5"]),
    ("#seed=5&edits=s:happy:1e9:", 0, ["1000000000", "outside ±10σ"]),
    ("#seed=5&edits=s:happy:1:;s:happy:2:happy", 1, ["locked", "Showing the 1 edit"]),
    ("#seed=5&locks=smile&edits=s:happy:1:;s:smile:1:;d:age:0.4:smile", 1, ["smile", "unknown lock"]),
    ("#seed=5&edits=d:happy:6:;d:happy:6:", 1, ["±10σ"]),
]


@pytest.mark.parametrize("fragment,kept,words", BAD_LINKS, ids=[f"link{i}" for i in range(len(BAD_LINKS))])
def test_a_bad_or_foreign_link_falls_back_and_says_what_was_dropped(page, server, fragment, kept, words):
    open_page(page, server.url + "/" + fragment)
    message = page.locator("#error-text").inner_text()
    assert page.locator("#error").is_visible() and "dropped" in message
    for word in words:
        assert word in message, message
    state = state_from_url(page.url)
    assert state["seed"] == 5 and len(state["edits"]) == kept and "smile" not in state["locks"]
    body = {**state, "size": 64}
    assert shown_bytes(page) == httpx.post(server.url + "/api/render", json=body).content
    assert page.locator("#caption").inner_text().startswith("face #5")
    # a later good link in the same tab works, and clears the message
    page.evaluate("location.hash = '#seed=5&edits=s:happy:1.5:'")
    page.wait_for_function("location.hash === '#seed=5&edits=s:happy:1.5:' && document.body.dataset.idle === 'true'")
    idle(page)
    assert value_of(page, "happy") == pytest.approx(1.5, abs=0.006)


def test_range_guard_holds_under_fast_input(page, server):
    open_page(page, server.url + "/#seed=14")
    # 30 clicks faster than frames arrive, on one knob and then alternating between two
    page.evaluate("() => { const b = document.querySelector('.knob[data-knob=surprise] .plus'); for (let i = 0; i < 30; i++) b.click(); }")
    idle(page)
    page.wait_for_timeout(300)
    idle(page)
    assert value_of(page, "surprise") <= 4.0 + 1e-6 and value_of(page, "surprise") > 3.0
    assert "range is ±4σ" in page.locator("#error-text").inner_text()
    page.evaluate("""() => { const a = document.querySelector('.knob[data-knob=happy] .plus'),
                                    b = document.querySelector('.knob[data-knob=yaw] .minus');
                             for (let i = 0; i < 30; i++) (i % 2 ? a : b).click(); }""")
    for _ in range(40):
        idle(page)
        page.wait_for_timeout(100)
        if page.evaluate("document.body.dataset.idle") == "true":
            break
    state = state_from_url(page.url)
    values = eval(httpx.post(server.url + "/api/render", json={**state, "size": 16}).headers["x-knob-values"])
    assert all(abs(v) <= 4.0 + 1e-6 for v in values), values
    # holding → on a slider
    page.focus(".knob[data-knob=warmth] input[type=range]")
    for _ in range(25):
        page.keyboard.press("ArrowRight")
    for _ in range(40):
        page.wait_for_timeout(100)
        if page.evaluate("document.body.dataset.idle") == "true":
            break
    idle(page)
    assert value_of(page, "warmth") <= 4.0 + 1e-6


def test_keyboard_lock_redo_and_gallery_focus(page, server):
    open_page(page, server.url + "/#seed=15")
    page.click("#caption")  # nothing focused
    page.keyboard.press("l")
    assert state_from_url(page.url)["locks"] == []
    page.focus(".knob[data-knob=yaw] input[type=range]")
    page.keyboard.press("l")
    assert state_from_url(page.url)["locks"] == ["yaw"]
    page.focus(".knob[data-knob=happy] .plus")
    page.keyboard.press("Enter")
    idle(page)
    edited = state_from_url(page.url)
    page.keyboard.press("Control+z")
    idle(page)
    assert state_from_url(page.url)["edits"] == []
    page.keyboard.press("Control+y")
    idle(page)
    assert state_from_url(page.url) == edited
    page.click("#gallery-toggle")
    assert page.evaluate("document.activeElement.closest('#gallery') !== null")
    page.keyboard.press("Escape")
    assert page.locator("#gallery").is_hidden()
    assert page.evaluate("document.activeElement.id") == "gallery-toggle"
    page.click("#help-toggle")
    assert page.locator("#help").is_visible() and "σ" in page.locator("#help").inner_text()
    page.keyboard.press("Escape")
    assert page.locator("#help").is_hidden()


def _contrast(page, selector, prop="color") -> float:
    return page.evaluate("""([sel, prop]) => {
        const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => v / 255)
            .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        const el = document.querySelector(sel);
        let bg = el, color = getComputedStyle(el)[prop];
        while (bg && ['rgba(0, 0, 0, 0)', 'transparent'].includes(getComputedStyle(bg).backgroundColor)) bg = bg.parentElement;
        const [a, b] = [lum(color), lum(getComputedStyle(bg || document.body).backgroundColor)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
    }""", [selector, prop])


@pytest.mark.skipif(not os.path.exists(AXE), reason="axe-core is not installed (npm ci)")
@pytest.mark.parametrize("size", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_accessibility(browser, server, size):
    context = _context(browser, *size)
    try:
        page = context.new_page()
        open_page(page, server.url + "/#seed=16")
        page.click(".knob[data-knob=happy] .strip-btn")
        page.wait_for_selector("#strip .strip-img[src^=blob]", state="attached")
        page.locator(".knob[data-knob=surprise] .value").fill("9")
        page.keyboard.press("Enter")
        page.wait_for_selector("#error:not([hidden])")
        idle(page)
        page.wait_for_function("document.querySelector('.knob[data-knob=brightness] .reading').textContent !== ''")
        page.add_script_tag(path=AXE)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
        assert bad == [], bad
        # one live region; buttons named for their knob; chips labelled; alt text that follows the face
        assert page.locator("[aria-live], [role=status], [role=alert], output").count() == 1
        assert page.get_by_role("button", name="strip for happy", exact=True).count() == 1
        assert page.get_by_role("button", name="lock yaw", exact=True).count() == 1
        assert page.locator(".knob[data-knob=brightness] .reading").evaluate("e => e.textContent").startswith("reads ")
        assert _contrast(page, ".knob[data-knob=warmth] .lock") >= 3.0
        alt = page.locator("#face").get_attribute("alt")
        page.locator(".knob[data-knob=happy] .value").fill("2")
        page.keyboard.press("Enter")
        idle(page)
        assert page.locator("#face").get_attribute("alt") != alt and "happy +2.00σ" in page.locator("#face").get_attribute("alt")
    finally:
        context.close()


def test_long_sliders_and_typed_values(browser, server):
    context = _context(browser, 1920, 1080)
    try:
        page = context.new_page()
        open_page(page, server.url + "/#seed=17")
        assert page.locator(".knob[data-knob=happy] input[type=range]").bounding_box()["width"] >= 500
        page.set_viewport_size({"width": 1280, "height": 800})
        settle(page)
        assert page.locator(".knob[data-knob=happy] input[type=range]").bounding_box()["width"] >= 400
        value = page.locator(".knob[data-knob=happy] .value")
        value.fill("2.5")
        value.press("Enter")
        idle(page)
        assert value_of(page, "happy") == pytest.approx(2.5, abs=1e-9)
        assert state_from_url(page.url)["edits"][-1] == {"op": "set", "knob": "happy", "value": 2.5, "locks": []}
        value.fill("−1.25")  # a typographic minus, as the page writes it
        value.press("Enter")
        idle(page)
        assert value_of(page, "happy") == pytest.approx(-1.25, abs=1e-9)
        value.fill("7")
        value.press("Enter")
        assert "range is ±4σ" in page.locator("#error-text").inner_text()
        value.fill("abc")
        value.press("Enter")
        assert "type a number" in page.locator("#error-text").inner_text()
        assert value_of(page, "happy") == pytest.approx(-1.25, abs=1e-9)
        page.click("#undo")
        idle(page)
        assert value_of(page, "happy") == pytest.approx(2.5, abs=1e-9)  # one undo step per typed value
    finally:
        context.close()


def test_minor_items(page, server):
    def tweak(route):
        res = route.fetch()
        info = res.json()
        info["knobs"][0]["r2"] = 0.2987  # happy: just under the weak line
        info["knobs"][0]["weak"] = True
        route.fulfill(response=res, json=info)

    page.route("**/api/model", tweak)
    open_page(page, server.url + "/#seed=18&edits=s:warmth:-3:")
    happy = page.locator(".knob[data-knob=happy]")
    assert "0.299" in happy.locator(".name").get_attribute("title") and happy.locator(".weak").count() == 1
    page.wait_for_function("document.querySelector('.knob[data-knob=warmth] .reading').textContent !== ''")
    texts = page.locator(".reading, #other-readings").evaluate_all("els => els.map(e => e.textContent)")
    texts += page.locator(".value").evaluate_all("els => els.map(e => e.value)")
    assert any("\u2212" in t for t in texts) and not any("-" in t for t in texts), texts
    # the strip marks the current value
    page.click(".knob[data-knob=warmth] .strip-btn")
    page.wait_for_selector("#strip .strip-img[src^=blob]", state="attached")
    marker, strip = page.locator("#strip .strip-marker").bounding_box(), page.locator("#strip .strip-img").bounding_box()
    tile = strip["width"] / 7
    assert marker["x"] + marker["width"] / 2 == pytest.approx(strip["x"] + tile / 2, abs=3)  # −3σ: the first tile
    assert "0" in page.locator("#strip .strip-scale").inner_text()
    # a locked knob's − / + look inactive; New face says the locks are kept
    page.click(".knob[data-knob=yaw] .lock")
    style = page.locator(".knob[data-knob=yaw] .plus").evaluate("b => getComputedStyle(b).borderStyle")
    assert style == "dashed"
    assert page.locator(".knob[data-knob=happy] .plus").evaluate("b => getComputedStyle(b).borderStyle") == "solid"
    page.click("#random")
    page.wait_for_function("document.getElementById('toast').textContent.includes('locks kept: yaw')")


def test_before_after_and_split_view(page, server):
    open_page(page, server.url + "/#seed=19&edits=s:happy:3:")
    plain = httpx.post(server.url + "/api/render", json={"seed": 19, "size": 64}).content
    page.focus(".knob[data-knob=happy] input[type=range]")
    page.keyboard.down("b")
    page.wait_for_selector("#face-before[src^=blob]:not([hidden])")
    src = page.locator("#face-before").get_attribute("src")
    data = page.evaluate("""async (src) => { const b = await (await fetch(src)).blob();
        return await new Promise((done) => { const r = new FileReader(); r.onload = () => done(r.result.split(',')[1]); r.readAsDataURL(b); }); }""", src)
    assert base64.b64decode(data) == plain
    page.keyboard.up("b")
    assert page.locator("#face-before").is_hidden()
    page.check("#split")
    page.wait_for_selector("#face-before:not([hidden])")
    clip = page.locator("#face-before").evaluate("e => getComputedStyle(e).clipPath")
    assert "inset" in clip and "50%" in clip
    # the seed box
    page.fill("#seed-input", "123")
    page.keyboard.press("Enter")
    idle(page)
    assert state_from_url(page.url)["seed"] == 123


def test_trust_and_percentiles(page, server):
    leaks = {"status": "ready", "detail": None, "faces": 48, "seed": 1, "unit": "feature SDs per σ of the knob",
             "leaks": {"happy": [{"feature": "warmth", "effect": 0.42}, {"feature": "contrast", "effect": -0.2}],
                       "yaw": []}}
    page.route("**/api/leaks", lambda route: route.fulfill(json=leaks))
    open_page(page, server.url + "/#seed=20")
    page.wait_for_selector(".knob[data-knob=happy] .drags")
    assert page.locator(".knob[data-knob=happy] .drags").inner_text() == "also moves warmth +0.4, contrast −0.2"
    assert page.locator(".knob[data-knob=yaw] .drags").inner_text() == "moves little else"
    bar = page.locator(".knob[data-knob=yaw] .quality > span").bounding_box()["width"]
    full = page.locator(".knob[data-knob=yaw] .quality").bounding_box()["width"]
    assert bar / full == pytest.approx(0.65, abs=0.02)  # the planted held-out R²
    page.locator(".knob[data-knob=happy] .value").fill("2")
    page.keyboard.press("Enter")
    idle(page)
    assert page.locator("#percentile").inner_text() == "happy +2.00σ: more happy than 98% of faces"


def test_favourites_history_and_session_files(page, server, tmp_path):
    import json

    open_page(page, server.url + "/#seed=21")
    page.click(".knob[data-knob=happy] .plus")
    idle(page)
    edited = state_from_url(page.url)
    page.click("#saved-toggle")
    page.click("#fav-add")
    assert page.locator("#favourites li a").all_inner_texts() == ["face #21 · 1 edit"]
    with page.expect_download() as info:
        page.click("#session-save")
    path = tmp_path / "session.json"
    info.value.save_as(path)
    data = json.loads(path.read_text())
    assert data["format"] == "tlgan.session" and {k: data[k] for k in ("seed", "edits", "locks")} == edited
    page.keyboard.press("Escape")
    page.click("#random")
    idle(page)
    assert state_from_url(page.url)["seed"] != 21
    page.click("#saved-toggle")
    assert page.locator("#history li a").first.inner_text() == "face #21 · 1 edit"
    page.set_input_files("#session-load", str(path))
    idle(page)
    page.wait_for_function("location.hash.startsWith('#seed=21&')")
    idle(page)
    assert state_from_url(page.url) == edited
    # a favourite is a link: following it from a fresh page restores the face
    page.goto("about:blank")
    open_page(page, server.url + "/#seed=3")
    page.click("#saved-toggle")
    page.click("#favourites li a")
    page.wait_for_function("location.hash.startsWith('#seed=21&')")
    idle(page)
    assert state_from_url(page.url) == edited
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    page.click("#saved-toggle")
    page.set_input_files("#session-load", str(bad))
    page.wait_for_function("document.getElementById('error-text').textContent.includes('not a tlgan session')")


def test_variations_of_this_face(page, server):
    open_page(page, server.url + "/#seed=22&locks=yaw&edits=s:happy:1:")
    before = state_from_url(page.url)
    page.click("#gallery-toggle")
    page.click("#gallery-variations")
    page.wait_for_function("[...document.querySelectorAll('#gallery-grid img')].filter(i => i.naturalWidth === 128).length === 12")
    assert page.locator("#gallery-title").text_content() == "Variations of face #22"
    thumb = page.locator("#gallery-grid .thumb").nth(5)
    thumb.click()
    idle(page)
    after = state_from_url(page.url)
    assert after["seed"] == 22 and after["edits"][:1] == before["edits"] and len(after["edits"]) == 4
    added = after["edits"][1:]
    assert all(e["op"] == "set" and e["knob"] != "yaw" and abs(e["value"]) <= 4 and e["locks"] == ["yaw"] for e in added)
    assert thumb.locator("img").get_attribute("alt").count("σ") == 3
    # the picture picked is the state now shown (earlier moves may drift as later knobs move)
    assert value_of(page, added[-1]["knob"]) == pytest.approx(added[-1]["value"], abs=0.006)


def test_blend_with_another_face(browser, page, server):
    open_page(page, server.url + "/#seed=23")
    page.fill("#mix-seed", "8")
    page.locator("#mix-t").fill("1")
    idle(page)
    state = page.url.split("#")[1]
    assert "mix=8:1" in state
    face8 = decode(httpx.post(server.url + "/api/render", json={"seed": 8, "size": 64}).content)
    assert np.abs(decode(shown_bytes(page)).astype(int) - face8).max() <= 1
    page.locator("#mix-t").fill("0.4")
    idle(page)
    page.click(".knob[data-knob=happy] .plus")
    idle(page)
    link, shown = page.url, shown_bytes(page)
    assert "mix=8:0.4" in link
    context = _context(browser, 900, 700)
    try:
        other = context.new_page()
        open_page(other, link)
        assert shown_bytes(other) == shown and other.locator("#mix-t").input_value() == "0.4"
        assert other.locator("#caption").inner_text() == "face #23 blended 40% with #8 · 1 edit"
    finally:
        context.close()
    page.click("#undo")
    idle(page)
    page.click("#undo")
    idle(page)
    assert "mix=8:1" in page.url


def test_switching_knob_sets_keeps_the_face(browser):
    from webtools import subset_axes

    from tlgan.apps.web import create_multi_app

    generator, axes = web_model()
    app = create_multi_app(generator, [("faces", axes), ("light", subset_axes(axes, ["yaw", "brightness"]))],
                           StatsExtractor())
    context = _context(browser)
    try:
        with LiveServer(app) as live:
            page = context.new_page()
            open_page(page, live.url + "/#seed=24&edits=s:yaw:0.8:;s:happy:1:")
            assert page.locator("#set-box").is_visible()
            page.select_option("#knob-set", label="light")
            page.wait_for_url("**/sets/light/**")
            page.wait_for_selector("body[data-ready=true][data-idle=true]", state="attached", timeout=15000)
            assert [k for k in page.locator(".knob").evaluate_all("rows => rows.map(r => r.dataset.knob)")] == ["yaw", "brightness"]
            state = state_from_url(page.url)
            assert state["seed"] == 24 and state["edits"] == [{"op": "set", "knob": "yaw", "value": 0.8, "locks": []}]
            assert "happy" in page.locator("#error-text").inner_text()  # says what this set cannot show
            assert value_of(page, "yaw") == pytest.approx(0.8, abs=0.006)
            assert page.locator("#knob-set").evaluate("s => s.selectedOptions[0].textContent") == "light"
    finally:
        context.close()


def test_a_busy_server_is_retried_after_the_wait_it_gives(page, server):
    open_page(page, server.url + "/#seed=25")
    calls = []

    def busy_once(route):
        calls.append(1)
        if len(calls) == 1:
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={"detail": "the server is busy"})
        else:
            route.continue_()

    page.route("**/api/render", busy_once)
    page.click(".knob[data-knob=happy] .plus")
    page.wait_for_function("document.getElementById('toast').textContent.includes('busy; retrying in 1 s')")
    page.wait_for_function("location.hash.includes('happy') && document.body.dataset.idle === 'true'", timeout=15000)
    idle(page)
    assert len(calls) >= 2 and page.locator("#error").is_hidden()
    state = state_from_url(page.url)
    assert shown_bytes(page) == httpx.post(server.url + "/api/render", json={**state, "size": 64}).content
