"""Teaching a knob in the page, in Debian's headless Chromium: create, label two pages, save, use it with a lock,
reload, share the link with a server that never saw the knob, delete."""

from __future__ import annotations

import os
import urllib.parse

import pytest
import torch
from test_web_browser import browser  # noqa: F401  (the shared Chromium fixture)
from test_web_browser import (
    CHROMIUM,
    _context,
    idle,
    open_page,
    shown_bytes,
    state_from_url,
    value_of,
)
from webtools import LiveServer, StatsExtractor, web_model

from tlgan.apps.web import create_app
from tlgan.editing.library import KnobLibrary
from tlgan.sampling.latents import latent_for_seed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
RULE = torch.nn.functional.normalize(torch.randn(100, generator=torch.Generator().manual_seed(11)), dim=0)
SHOTS = os.environ.get("TLGAN_SHOTS")  # a folder to keep screenshots of the flow in


def has_it(seed: int) -> bool:
    """The hidden rule the simulated user labels by."""
    return float(latent_for_seed(seed, 100) @ RULE) > 0


def label_page(page) -> list[int]:
    page.wait_for_selector("#teach-grid[data-ready=true]", state="attached", timeout=20000)
    tiles = page.locator("#teach-grid .teach-face")
    assert tiles.count() == 16
    seeds = []
    for i in range(tiles.count()):
        tile = tiles.nth(i)
        seed = int(tile.get_attribute("data-seed"))
        seeds.append(seed)
        if i == 15:
            continue  # skipped: left unmarked
        tile.click()
        if not has_it(seed):
            tile.click()
        assert tile.get_attribute("data-mark") == ("1" if has_it(seed) else "0")
    assert page.locator("#teach-grid img").evaluate_all("imgs => imgs.every(i => i.naturalWidth === 160)")
    return seeds


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def test_teach_a_knob_in_the_page(browser, tmp_path):
    generator, axes = web_model()
    library = KnobLibrary(tmp_path / "knobs")
    app = create_app(generator, axes, StatsExtractor(), library=library)  # the default teacher: from the pictures
    context = _context(browser)
    errors: list[str] = []
    try:
        with LiveServer(app) as server:
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            open_page(page, server.url + "/#seed=6")
            page.click("#teach-open")
            assert page.locator("main.layout").is_hidden()
            page.fill("#teach-name", "happy")  # a built-in name is refused at once
            page.click("#teach-start")
            assert "already a knob 'happy'" in page.locator("#error-text").inner_text()
            page.fill("#teach-name", "glasses")
            page.click("#teach-start")
            first = label_page(page)
            shot(page, "teach-1-page.png")
            page.click("#teach-next")
            page.wait_for_function("document.getElementById('teach-accuracy').textContent.includes('(15 labels)')")
            page.wait_for_function("[...document.querySelectorAll('.teach-strip')].filter(i => i.naturalWidth > 0).length === 3")
            second = label_page(page)
            assert not set(first) & set(second)
            assert library.names() == []  # a draft until saved
            page.click("#teach-next")
            page.wait_for_function("document.getElementById('teach-accuracy').textContent.includes('(30 labels)')")
            assert page.locator("#teach-chart circle").count() == 2
            page.wait_for_selector("#teach-grid[data-ready=true]", state="attached", timeout=20000)
            shot(page, "teach-2-after-two-pages.png")
            page.click("#teach-save")
            page.wait_for_selector(".knob[data-knob=glasses]", timeout=15000)
            idle(page)
            assert page.locator("#teach").is_hidden() and page.locator("main.layout").is_visible()
            assert library.names() == ["glasses"]
            saved = library.load("glasses")
            assert sorted(s for s, _ in saved.params["taught"]["glasses"]["examples"]) == sorted(first[:15] + second[:15])
            assert page.locator(".group:has(.knob[data-knob=glasses]) h2").inner_text().lower() == "taught"
            # use it with a lock: glasses locked, happy moved
            page.click(".knob[data-knob=glasses] .lock")
            glasses = value_of(page, "glasses")
            page.click(".knob[data-knob=happy] .plus")
            idle(page)
            page.click(".knob[data-knob=happy] .plus")
            idle(page)
            assert value_of(page, "glasses") == glasses
            page.click(".knob[data-knob=glasses] .minus")
            assert "locked" in page.locator("#toast").inner_text()
            page.click(".knob[data-knob=glasses] .lock")
            page.click(".knob[data-knob=glasses] .plus")
            idle(page)
            assert value_of(page, "glasses") == pytest.approx(glasses + 0.4, abs=0.011)
            shot(page, "teach-3-saved-knob.png")
            link, image = page.url, shown_bytes(page)
            fragment = dict(p.split("=", 1) for p in urllib.parse.urlsplit(link).fragment.split("&"))
            code = app.state.knobs.describe("glasses")["code"]
            assert fragment["taught"] == f"glasses:{code}" and len(code) < 300
            # reload: the knob is still there, the image the same
            page.reload()
            page.wait_for_selector("body[data-ready=true]", state="attached", timeout=15000)
            idle(page)
            assert page.locator(".knob[data-knob=glasses]").count() == 1 and shown_bytes(page) == image
            # a server that never saw the knob opens the link and shows the same image
            fresh = create_app(generator, axes, None, library=KnobLibrary(tmp_path / "elsewhere"))
            with LiveServer(fresh) as other_server:
                other = context.new_page()
                other.on("pageerror", lambda exc: errors.append(str(exc)))
                open_page(other, link.replace(server.url, other_server.url))
                assert other.locator("#error").is_hidden()
                assert shown_bytes(other) == image and state_from_url(other.url) == state_from_url(link)
                assert other.locator(".knob[data-knob=glasses]").count() == 1
                assert KnobLibrary(tmp_path / "elsewhere").names() == []
                # a corrupted code is refused with a clear message
                bad = link.replace(code, code[:-10])
                other.goto("about:blank")
                open_page(other, bad.replace(server.url, other_server.url).replace("glasses", "specs"))
                assert "This link uses the taught knob 'specs', which this server cannot use" in other.locator("#error-text").inner_text()
            # "more like this" from the editor: face 11 as drawn joins the knob's labels, and the knob is refitted
            page.goto("about:blank")
            open_page(page, server.url + "/#seed=11")
            idle(page)
            before = library.load("glasses").params["taught"]["glasses"]["examples"]
            assert [11, 1] not in before
            page.click(".knob[data-knob=glasses] .teach-more button[data-label='1']")
            page.wait_for_function("document.getElementById('toast').textContent.includes('refitted with face #11')")
            idle(page)
            after = library.load("glasses").params["taught"]["glasses"]["examples"]
            assert after == [e for e in before if e[0] != 11] + [[11, 1]]
            shot(page, "teach-4-more-like-this.png")
            # an edited face is no seed's face: the buttons are off
            page.click(".knob[data-knob=happy] .plus")
            idle(page)
            assert page.locator(".knob[data-knob=glasses] .teach-more button").first.is_disabled()
            # delete it from the panel
            page.click("#teach-open")
            page.click(".teach-knob[data-knob=glasses] .teach-delete")
            page.wait_for_selector(".knob[data-knob=glasses]", state="detached", timeout=15000)
            idle(page)
            assert library.names() == [] and "glasses" not in page.url
            assert page.locator("#error").is_hidden()
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
