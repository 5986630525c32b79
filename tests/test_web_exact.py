"""Exact mode in the web API and its replay cache, on the planted non-linear model (fast)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from planted_nonlinear import BentExtractor, BentGenerator, bent_axes

from tlgan.apps.web import create_app
from tlgan.apps.web.state import Replayer
from tlgan.editing.editor import Edit, Editor
from tlgan.editing.exact import with_reading_stats

EDITS = [Edit("set", "tilt", 1.5, ("bend",), True), Edit("step", "glow", 0.5, (), False),
         Edit("set", "smile", -0.8, ("bend", "tilt"), True), Edit("set", "smile", -1.0, ("bend", "tilt"), True)]


@pytest.fixture(scope="module")
def bent():
    gen, ext = BentGenerator(), BentExtractor()
    return gen, ext, with_reading_stats(bent_axes(gen, ext), gen, ext, n=2000)


def test_cache_on_and_off_give_the_same_bytes(bent):
    gen, ext, axes = bent
    cached, uncached = Replayer(gen, axes, extractor=ext), Replayer(gen, axes, extractor=ext, cache=False)
    direct = Editor.replay(gen, axes, 4, EDITS, extractor=ext)
    for n in range(1, len(EDITS) + 1):  # as a dragged slider does: growing prefixes, then the same again
        a = cached.editor(4, EDITS[:n])
        b = uncached.editor(4, EDITS[:n])
        assert a.z.numpy().tobytes() == b.z.numpy().tobytes()
    again = cached.editor(4, EDITS, ["bend"])
    assert cached.hits > 0 and again.z.numpy().tobytes() == direct.z.numpy().tobytes()
    assert again.locks == {"bend"} and len(again.reports) == len(EDITS) and again.reports[1] is None


def test_api_exact_state(bent):
    gen, ext, axes = bent
    app = create_app(gen, axes, ext)
    state = {"seed": 4, "edits": [e.to_dict() for e in EDITS], "locks": [], "exact": True}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        res = client.post("/api/render", json={**state, "size": 64})
        assert res.status_code == 200
        values = dict(zip(axes.names, json.loads(res.headers["X-Knob-Values"])))
        assert abs(values["smile"] - -1.0) <= 0.06  # exact mode shows the standardised reading
        assert json.loads(res.headers["X-Latent-Typicality"])["warn"] is False
        again = client.post("/api/render", json={**state, "size": 64})
        assert again.content == res.content
        body = client.post("/api/readings", json=state).json()
        assert body["exact_report"]["converged"] and abs(body["exact_values"]["smile"] + 1.0) <= 0.06
        linear = client.post("/api/render", json={**state, "exact": False, "size": 64})
        assert linear.content == res.content  # the mode shown changes the values, not the picture
        assert json.loads(linear.headers["X-Knob-Values"]) != json.loads(res.headers["X-Knob-Values"])
        bad = client.post("/api/render", json={**state, "exact": "yes"})
        assert bad.status_code == 422
        far = {"seed": 0, "edits": [Edit("set", "tilt", 9.0, ("bend", "smile"), True).to_dict()], "locks": []}
        res = client.post("/api/render", json={**far, "size": 64})
        assert res.status_code == 200 and "is in the way" in json.loads(res.headers["X-Exact-Report"])
        blocked = json.loads(res.headers["X-Exact-Blocked-By"])   # the lock in the way, by name (the page words it)
        assert blocked in ("bend", "smile") and f"'{blocked}' is in the way" in json.loads(res.headers["X-Exact-Report"])
        strip = client.post("/api/strip", json={**state, "knob": "glow", "steps": 3, "span": 1.0, "size": 16})
        assert strip.status_code == 200 and json.loads(strip.headers["X-Strip-Stops"]) == []
        # a strip past what the locks allow says which pictures ended short, and why
        short = client.post("/api/strip", json={"seed": 0, "edits": [], "locks": ["bend", "smile"], "exact": True,
                                                "knob": "tilt", "steps": 3, "span": 9.0, "size": 16})
        stops = json.loads(short.headers["X-Strip-Stops"])
        assert short.status_code == 200 and stops and {s["value"] for s in stops} <= {-9.0, 9.0}
        assert all("is in the way" in s["message"] for s in stops)


def test_cache_keeps_mode_mix_and_prefix_apart(bent):
    gen, ext, axes = bent
    cached, uncached = Replayer(gen, axes, extractor=ext), Replayer(gen, axes, extractor=ext, cache=False)
    linear = [Edit(e.op, e.knob, e.value, e.locks, False) for e in EDITS]
    for edits, mix in [(EDITS, None), (linear, None), (EDITS, (7, 0.4)), (linear, (7, 0.4)), (EDITS[:2], None)]:
        for _ in range(2):  # the second time from the cache
            a, b = cached.editor(4, edits, mix=mix), uncached.editor(4, edits, mix=mix)
            assert a.z.numpy().tobytes() == b.z.numpy().tobytes() and a.reports == b.reports
    assert cached.editor(4, EDITS).z.numpy().tobytes() != cached.editor(4, linear).z.numpy().tobytes()
    assert cached.editor(4, EDITS).z.numpy().tobytes() != cached.editor(4, EDITS, mix=(7, 0.4)).z.numpy().tobytes()
