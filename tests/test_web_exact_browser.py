"""The exact switch in real headless Chromium: part of the link, and a shared exact link gives the same bytes."""

from __future__ import annotations

import urllib.parse

import pytest
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes
from test_web_browser import ARGS, CHROMIUM, _context, drag_slider, idle, open_page, shown_bytes, value_of
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


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


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
