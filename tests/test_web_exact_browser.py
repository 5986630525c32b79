"""The exact switch in real headless Chromium: part of the link, and a shared exact link gives the same bytes."""

from __future__ import annotations

import urllib.parse

import pytest
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes
from test_web_browser import browser  # noqa: F401  (the shared Chromium fixture)
from test_web_browser import _context, drag_slider, idle, open_page, shown_bytes, value_of
from webtools import LiveServer

from tlgan.apps.web import create_app
from tlgan.editing.exact import with_reading_stats

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def server():
    gen, ext = BentGenerator(), BentExtractor()
    axes = with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)
    with LiveServer(create_app(gen, axes, ext)) as live:
        yield live


def test_exact_switch_is_part_of_the_shared_link(browser, server):
    context = _context(browser)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_page(page, server.url + "/#seed=4")
        page.check("#exact")
        idle(page)
        assert "exact=1" in page.url
        page.click(".knob[data-knob=bend] .lock")
        drag_slider(page, "smile", 0.7)
        idle(page)
        fragment = urllib.parse.unquote(urllib.parse.urlsplit(page.url).fragment)
        assert ":x" in fragment and "exact=1" in fragment  # the edits are exact ones
        shown = value_of(page, "smile")
        original = shown_bytes(page)
        other_ctx = _context(browser, 900, 700)
        try:
            other = other_ctx.new_page()
            other.on("pageerror", lambda exc: errors.append(str(exc)))
            open_page(other, page.url)
            assert shown_bytes(other) == original
            assert other.is_checked("#exact") and abs(value_of(other, "smile") - shown) < 1e-9
        finally:
            other_ctx.close()
        # switching back to linear keeps the picture (the edits keep their mode) and the link says so
        page.uncheck("#exact")
        idle(page)
        assert "exact=1" not in page.url and shown_bytes(page) == original
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_exact_stop_message_preview_first_and_drift_mark(browser, server):
    context = _context(browser)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        renders: list[dict] = []
        page.on("request", lambda r: renders.append(r.post_data_json) if r.url.endswith("/api/render") else None)
        # a blocked exact move: the linear frame is asked for first, then the exact one, whose stop message shows
        open_page(page, server.url + "/#seed=0&locks=bend,smile&exact=1&edits=s:tilt:3.9:bend,smile:x")
        idle(page)
        page.wait_for_selector("#error:not([hidden])")
        assert "'bend' is in the way" in page.text_content("#error-text")
        firsts = [r["edits"][-1].get("exact", False) for r in renders[:2]]
        assert firsts == [False, True], renders[:2]
        # the strip says which of its pictures ended short (the ±3σ ends are past what the locks allow)
        page.click(".knob[data-knob=tilt] .strip-btn")
        page.wait_for_selector("#strip .strip-stops:not([hidden])", timeout=60_000)
        assert "is in the way" in page.text_content("#strip .strip-stops")
        # linear mode: a move under a lock keeps the knob's σ but its reading drifts, and the row is marked
        open_page(page, server.url + "/#seed=4")
        page.click(".knob[data-knob=bend] .lock")
        assert page.locator(".drifted").count() == 0
        drag_slider(page, "tilt", 0.95)
        idle(page)
        page.wait_for_selector(".knob[data-knob=bend].drifted")
        page.check("#exact")
        idle(page)
        page.wait_for_function("!document.querySelector('.drifted')")
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_lock_others_locks_every_knob_but_the_focused_one(browser, server):
    context = _context(browser)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        open_page(page, server.url + "/#seed=4")
        page.focus(".knob[data-knob=tilt] input[type=range]")
        page.keyboard.press("o")
        idle(page)
        locks = urllib.parse.unquote(urllib.parse.urlsplit(page.url).fragment)
        assert "locks=bend,glow,smile" in locks
        assert page.get_attribute(".knob[data-knob=tilt] .lock", "aria-pressed") == "false"
        page.click("#lock-others")  # again, from the toolbar (on the knob last focused): unlocks them
        idle(page)
        assert "locks=" not in urllib.parse.unquote(urllib.parse.urlsplit(page.url).fragment)
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
