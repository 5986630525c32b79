"""The web API: every endpoint against the library's own results, every kind of bad request, limits, concurrency."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from webtools import KNOBS, LiveServer, StatsExtractor, decode, web_model

from tlgan.apps.web import create_app
from tlgan.apps.web.frames import png_bytes, tile_row
from tlgan.apps.web.renderer import BatchRenderer
from tlgan.apps.web.schemas import MAX_BODY_BYTES, MAX_EDITS
from tlgan.editing.editor import Edit, Editor
from tlgan.errors import TlganError
from tlgan.imaging import to_pil

NAMES = [k[0] for k in KNOBS]
LOCAL = "http://127.0.0.1"  # the app answers only to local Host names unless served on a public address


@pytest.fixture(scope="module")
def model():
    return web_model()


@pytest.fixture(scope="module")
def client(model):
    generator, axes = model
    app = create_app(generator, axes, StatsExtractor(), default_view=["happy", "yaw", "brightness"],
                     display={"title": "test faces", "labels": {"yaw": "head turn"}})
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def expected(model, seed, edits, size=512):
    generator, axes = model
    editor = Editor.replay(generator, axes, seed, [Edit.from_dict(e) for e in edits])
    return editor, np.asarray(to_pil(editor.render(), size))


EDITS = [{"op": "set", "knob": "happy", "value": 2.0, "locks": ["yaw"]},
         {"op": "step", "knob": "brightness", "value": -0.4, "locks": ["happy", "yaw"]}]


# ---- model info ------------------------------------------------------------------
def test_model_info(client):
    info = client.get("/api/model").json()
    assert [k["name"] for k in info["knobs"]] == NAMES
    assert info["groups"] == ["expression", "pose", "lighting and colour", "other"]
    by_name = {k["name"]: k for k in info["knobs"]}
    assert by_name["noise"]["weak"] and by_name["surprise"]["weak"] and not by_name["happy"]["weak"]
    assert by_name["yaw"]["r2"] == pytest.approx(0.65) and by_name["yaw"]["label"] == "head turn"
    assert [k["name"] for k in info["knobs"] if k["shown"]] == ["happy", "yaw", "brightness"]
    assert by_name["happy"]["description"] == "probability of a happy expression"
    assert info["extractor"]["name"] == "teststats"
    assert [f["name"] for f in info["extractor"]["features"]] == ["brightness", "warmth", "contrast"]
    assert info["title"] == "test faces" and info["step"] == 0.4 and info["slider_range"] == 4.0
    assert info["generator"]["latent_dim"] == 100 and info["generator"]["resolution"] == 64


# ---- render ----------------------------------------------------------------------
def test_render_is_the_editors_image(client, model):
    res = client.post("/api/render", json={"seed": 11, "edits": EDITS, "locks": ["yaw"]})
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    editor, pixels = expected(model, 11, EDITS)
    assert np.array_equal(decode(res.content), pixels)
    values = json.loads(res.headers["x-knob-values"])
    assert values == pytest.approx([editor.values()[n] for n in NAMES], abs=1e-9)
    assert values[NAMES.index("happy")] == pytest.approx(2.0, abs=1e-9)
    assert res.headers["server-timing"].startswith("frame;dur=")


def test_render_locks_hold_and_edits_matter(client, model):
    plain = client.post("/api/render", json={"seed": 5}).headers["x-knob-values"]
    locked = client.post("/api/render", json={"seed": 5, "edits": [
        {"op": "set", "knob": "happy", "value": -3.0, "locks": ["yaw", "brightness"]}]})
    before, after = json.loads(plain), json.loads(locked.headers["x-knob-values"])
    for name in ("yaw", "brightness"):
        assert after[NAMES.index(name)] == pytest.approx(before[NAMES.index(name)], abs=1e-9)
    assert after[NAMES.index("happy")] == pytest.approx(-3.0, abs=1e-9)
    # an unlocked correlated knob (warmth is 0.27-correlated with brightness) is free to drift
    unlocked = client.post("/api/render", json={"seed": 5, "edits": [{"op": "set", "knob": "brightness", "value": 3.0}]})
    assert abs(json.loads(unlocked.headers["x-knob-values"])[NAMES.index("warmth")] - before[NAMES.index("warmth")]) > 0.1


def test_render_formats_and_sizes(client, model):
    _, pixels64 = expected(model, 3, [], size=64)
    small = client.post("/api/render", json={"seed": 3, "size": 64})
    assert np.array_equal(decode(small.content), pixels64)
    webp = client.post("/api/render", json={"seed": 3, "size": 200, "format": "webp"})
    assert webp.headers["content-type"] == "image/webp"
    _, pixels200 = expected(model, 3, [], size=200)
    assert np.array_equal(decode(webp.content), pixels200)  # lossless
    assert not np.array_equal(decode(client.post("/api/render", json={"seed": 4, "size": 64}).content), pixels64)


def test_render_same_state_same_bytes(client):
    body = {"seed": 77, "edits": EDITS, "locks": []}
    assert client.post("/api/render", json=body).content == client.post("/api/render", json=body).content


# ---- readings, strip ---------------------------------------------------------------
def test_readings(client, model):
    res = client.post("/api/readings", json={"seed": 11, "edits": EDITS, "locks": ["yaw"]}).json()
    editor, _ = expected(model, 11, EDITS)
    truth = StatsExtractor()(editor.render()[None])[0]
    assert [r["name"] for r in res["readings"]] == ["brightness", "warmth", "contrast"]
    assert [r["value"] for r in res["readings"]] == pytest.approx(truth.tolist(), abs=1e-5)
    assert res["values"] == pytest.approx(editor.values(), abs=1e-9)
    assert res["extractor"] == "teststats"


def test_readings_follow_the_brightness_knob(client):
    def brightness(value):
        body = {"seed": 21, "edits": [{"op": "set", "knob": "brightness", "value": value, "locks": []}]}
        return client.post("/api/readings", json=body).json()["readings"][0]["value"]

    assert brightness(-2.5) + 0.15 < brightness(0.0) < brightness(2.5) - 0.1


def test_readings_without_extractor(model):
    generator, axes = model
    with TestClient(create_app(generator, axes, None), base_url=LOCAL) as c:
        assert c.get("/api/model").json()["extractor"] is None
        res = c.post("/api/readings", json={"seed": 1}).json()
        assert res["readings"] == [] and res["extractor"] is None and set(res["values"]) == set(NAMES)


def test_strip(client, model):
    generator, axes = model
    res = client.post("/api/strip", json={"seed": 9, "edits": EDITS[:1], "locks": ["yaw"], "knob": "brightness",
                                          "span": 2.0, "steps": 5, "size": 32})
    assert res.status_code == 200, res.text
    stops = json.loads(res.headers["x-strip-values"])
    assert stops == pytest.approx([-2, -1, 0, 1, 2])
    tiles = []
    for value in stops:
        editor = Editor.replay(generator, axes, 9, [Edit.from_dict(EDITS[0])], locks=["yaw"])
        editor.set("brightness", value)
        assert editor.value("yaw") == pytest.approx(Editor(generator, axes, 9).value("yaw"), abs=1e-9)
        tiles.append(np.asarray(to_pil(editor.render(), 32)))
    assert np.array_equal(decode(res.content), tile_row(tiles))


# ---- bad requests ----------------------------------------------------------------
def _edit(**kw):
    return {"op": "set", "knob": "happy", "value": 1.0, "locks": [], **kw}


BAD = [
    ("render", {"seed": -1}, "seed"),
    ("render", {"seed": 2**63}, "seed"),
    ("render", {"seed": 1.5}, "seed"),
    ("render", {"seed": "7"}, "seed"),
    ("render", {}, "seed"),
    ("render", {"seed": 1, "size": 8}, "size"),
    ("render", {"seed": 1, "size": 4096}, "size"),
    ("render", {"seed": 1, "format": "gif"}, "format"),
    ("render", {"seed": 1, "colour": "red"}, "colour"),
    ("render", {"seed": 1, "edits": [_edit(knob="hapy")]}, "unknown feature 'hapy'"),
    ("render", {"seed": 1, "edits": [_edit(locks=["nope"])]}, "unknown feature 'nope'"),
    ("render", {"seed": 1, "locks": ["nope"]}, "unknown feature 'nope'"),
    ("render", {"seed": 1, "edits": [_edit(op="jump")]}, "op"),
    ("render", {"seed": 1, "edits": [_edit(value=11.0)]}, "value"),
    ("render", {"seed": 1, "edits": [_edit(value=-10.5)]}, "value"),
    ("render", {"seed": 1, "edits": [_edit(value="1")]}, "value"),
    ("render", {"seed": 1, "edits": [_edit(op="step", value=6.0), _edit(op="step", value=6.0)]}, "within ±10σ"),
    ("render", {"seed": 1, "edits": [_edit(locks=["happy"])]}, "locked"),
    ("render", {"seed": 1, "edits": [{"op": "set", "knob": "happy"}]}, "value"),
    ("render", {"seed": 1, "edits": [_edit()] * (MAX_EDITS + 1)}, "edits"),
    ("readings", {"seed": 1, "edits": [_edit(knob="")]}, "knob"),
    ("readings", {"seed": 1, "edits": [_edit(knob="hapy")]}, "unknown feature"),
    ("strip", {"seed": 1, "knob": "nope"}, "unknown feature 'nope'"),
    ("strip", {"seed": 1, "knob": "happy", "steps": 1}, "steps"),
    ("strip", {"seed": 1, "knob": "happy", "span": 0}, "span"),
    ("strip", {"seed": 1, "knob": "happy", "span": 12}, "span"),
    ("strip", {"seed": 1, "knob": "happy", "locks": ["happy"]}, "locked"),
    ("strip", {"seed": 1}, "knob"),
]


@pytest.mark.parametrize("endpoint,body,words", BAD, ids=[f"{e}-{w}-{i}" for i, (e, _, w) in enumerate(BAD)])
def test_bad_requests_get_422_with_a_message(client, endpoint, body, words):
    res = client.post(f"/api/{endpoint}", json=body)
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail


@pytest.mark.parametrize("raw", [b"{not json", b'{"seed": 1, "edits": [{"op": "set", "knob": "happy", "value": NaN}]}',
                                 b'{"seed": 1, "edits": [{"op": "set", "knob": "happy", "value": Infinity}]}', b"[1, 2]", b""])
def test_malformed_bodies_get_422(client, raw):
    res = client.post("/api/render", content=raw, headers={"content-type": "application/json"})
    assert res.status_code == 422 and isinstance(res.json()["detail"], str)


def test_body_size_limit(client):
    big = json.dumps({"seed": 1, "locks": ["x" * 100] * (MAX_BODY_BYTES // 100)}).encode()
    res = client.post("/api/render", content=big, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "too large" in res.json()["detail"]

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(MAX_BODY_BYTES // 1000 + 2):
            yield b" " * 1000

    res = client.post("/api/render", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413


def test_wrong_methods_and_paths(client):
    assert client.get("/api/render").status_code == 405
    assert client.post("/api/model").status_code == 405
    for path in ("/static/../app.py", "/static/app.py", "/static/%2e%2e/app.py", "/static/index.html/..", "/etc/passwd"):
        assert client.get(path).status_code == 404, path


def test_no_route_takes_a_path_from_the_client(client):
    paths = [getattr(r, "path", "") for r in client.app.routes]
    assert "/api/render" in paths and not any("{" in p for p in paths)


def test_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/model", "/api/render", "/api/readings", "/api/strip"} <= set(spec["paths"])
    assert "image/png" in spec["paths"]["/api/render"]["post"]["responses"]["200"]["content"]


# ---- create_app checks ---------------------------------------------------------------
def test_create_app_refuses_bad_arguments(model):
    generator, axes = model
    with pytest.raises(TlganError, match="unknown feature 'nope'"):
        create_app(generator, axes, None, default_view=["nope"])
    with pytest.raises(TlganError, match="display option 'colour'"):
        create_app(generator, axes, None, display={"colour": "red"})
    from dataclasses import replace

    with pytest.raises(TlganError, match="made for generator"):
        create_app(generator, replace(axes, generator="other:123"), None)


# ---- concurrency and batching ----------------------------------------------------------
def test_concurrent_clients_never_mix_states(model):
    generator, axes = model
    states = [{"seed": 100 + i, "edits": [_edit(value=(i % 7) - 3.0, locks=["yaw"])], "locks": []} for i in range(24)]
    truth = [expected(model, s["seed"], s["edits"], size=64)[1] for s in states]
    app = create_app(generator, axes, StatsExtractor())
    results: list = [None] * len(states)
    with LiveServer(app) as server:
        barrier = threading.Barrier(len(states))

        def worker(i):
            with httpx.Client(base_url=server.url, timeout=30) as http:
                barrier.wait()
                for _ in range(3):
                    res = http.post("/api/render", json={**states[i], "size": 64})
                    assert res.status_code == 200
                    results[i] = decode(res.content)
                    assert np.array_equal(results[i], truth[i]), f"client {i} got another state's image"

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(states))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(r is not None and np.array_equal(r, t) for r, t in zip(results, truth))


def test_renderer_batches_concurrent_requests(model):
    generator, _ = model
    renderer = BatchRenderer(generator, StatsExtractor(), wait_s=0.3)
    try:
        z = torch.randn(16, generator.latent_dim)
        futures = [renderer.submit(z[i:i + 1], read=i % 2 == 0) for i in range(16)]
        frames = [f.result(30) for f in futures]
        assert renderer.batches == 1 and renderer.largest_batch == 16 and renderer.model_calls == 16
        with torch.inference_mode():
            images = generator(z)
            readings = StatsExtractor()(images)
        for i, frame in enumerate(frames):
            assert np.array_equal(frame.pixels[0], np.asarray(to_pil(images[i])))
            if i % 2 == 0:
                assert frame.readings[0] == pytest.approx(readings[i].numpy(), abs=1e-6)
            else:
                assert frame.readings is None
    finally:
        renderer.close()


class FailingGenerator(torch.nn.Module):
    """Wraps a generator; raises for latents whose first entry is above 50 (planted failure)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.latent_dim = inner, inner.latent_dim

    def forward(self, z):
        if bool((z[:, 0] > 50).any()):
            raise RuntimeError("planted failure")
        return self.inner(z)


def test_renderer_failure_reaches_only_the_request_that_caused_it(model):
    generator, _ = model
    renderer = BatchRenderer(FailingGenerator(generator), wait_s=0.3)
    try:
        good = torch.zeros(1, generator.latent_dim)
        bad = good.clone()
        bad[0, 0] = 99.0
        futures = [renderer.submit(good), renderer.submit(bad), renderer.submit(good)]
        with pytest.raises(RuntimeError, match="planted failure"):
            futures[1].result(30)
        assert futures[0].result(30).pixels.shape == futures[2].result(30).pixels.shape == (1, 64, 64, 3)
        assert renderer.render(good).pixels.shape == (1, 64, 64, 3)  # the worker is still alive
        with pytest.raises(TlganError, match="NaN"):
            renderer.submit(torch.full((1, generator.latent_dim), float("nan")))
        with pytest.raises(TlganError, match="no feature extractor"):
            renderer.submit(good, read=True)
    finally:
        renderer.close()


def test_renderer_chunks_give_the_same_image_whatever_shares_the_batch(model):
    generator, _ = model
    z = torch.randn(24, generator.latent_dim, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        alone = [to_pixels_one(generator, z[i]) for i in range(len(z))]
    for chunk in (1, 4):
        renderer = BatchRenderer(generator, chunk=chunk, wait_s=0.0)
        try:
            for size in (3, 5, 7):  # batch sizes whose kernels round differently from a batch of one
                frames = renderer.render(z[:size]).pixels
                padded = [to_pixels_one(generator, z[i], chunk) for i in range(size)]
                assert all(np.array_equal(f, p) for f, p in zip(frames, padded))
                if chunk == 1:
                    assert all(np.array_equal(f, a) for f, a in zip(frames, alone))
            assert renderer.model_calls == sum(-(-s // chunk) for s in (3, 5, 7))
        finally:
            renderer.close()


def to_pixels_one(generator, z, chunk=1):
    """Pixels of latent z rendered at the front of a zero-padded batch of ``chunk``."""
    from tlgan.apps.web.renderer import to_pixels

    batch = torch.cat([z[None], torch.zeros(chunk - 1, z.shape[0])])
    with torch.inference_mode():
        return to_pixels(generator(batch))[0]


def test_png_encoder_round_trips():
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (7, 5, 3), (64, 64, 3), (3, 200, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(decode(png_bytes(pixels)), pixels)
    with pytest.raises(TlganError):
        png_bytes(np.zeros((4, 4), np.uint8))


# ---- the real default model -----------------------------------------------------------
def test_default_model_readings_follow_the_happy_knob():
    """The shipped knob set with the real default extractors: moving 'happy' changes what the emotion model reads."""
    from tlgan.axes.defaults import (
        DEFAULT_EXTRACTORS,
        DEFAULT_GENERATOR,
        load_default_axes,
    )
    from tlgan.models.extractors import load_extractor
    from tlgan.models.generators import load_generator

    axes = load_default_axes()
    app = create_app(load_generator(DEFAULT_GENERATOR, "cpu"), axes, load_extractor(DEFAULT_EXTRACTORS, "cpu"))
    with TestClient(app, base_url=LOCAL) as c:
        info = c.get("/api/model").json()
        assert [k["name"] for k in info["knobs"]] == axes.names
        assert [f["name"] for f in info["extractor"]["features"]] == axes.names

        def happy(seed, value):
            body = {"seed": seed, "edits": [{"op": "set", "knob": "happy", "value": value, "locks": ["brightness"]}]}
            res = c.post("/api/readings", json=body).json()
            assert res["values"]["happy"] == pytest.approx(value, abs=1e-9)
            return next(r["value"] for r in res["readings"] if r["name"] == "happy")

        lows, highs = zip(*[(happy(seed, -3.0), happy(seed, 3.0)) for seed in range(8)])
        assert sum(highs) / 8 > sum(lows) / 8 + 0.6


# ---- hardening: bounded work, headers, hosts, error shapes (issue 11, items 4 and 7) ----------
class SlowGenerator(torch.nn.Module):
    """Wraps a generator; every call sleeps ``delay`` s first (a stand-in for heavy work)."""

    def __init__(self, inner, delay):
        super().__init__()
        self.inner, self.delay = inner, delay
        for name in ("latent_dim", "resolution", "identity", "name"):
            setattr(self, name, getattr(inner, name))

    def forward(self, z):
        import time

        time.sleep(self.delay)
        return self.inner(z)

    def synthesize(self, z):
        return self.forward(z)


def test_every_response_says_nosniff(client):
    responses = [client.get("/api/model"), client.get("/openapi.json"), client.get("/"), client.get("/nope"),
                 client.post("/api/readings", json={"seed": 1}), client.post("/api/render", json={"seed": -1}),
                 client.post("/api/strip", json={"seed": 1, "knob": "happy", "size": 16}),
                 client.post("/api/check", json={"seed": 1})]
    for res in responses:
        assert res.headers["x-content-type-options"] == "nosniff", res.request.url
        assert res.headers.get_list("x-content-type-options") == ["nosniff"]


def test_loopback_server_refuses_foreign_host_names(model):
    from tlgan.apps.web.app import configure_hosts

    generator, axes = model
    app = create_app(generator, axes, None)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "attacker.localhost.evil", ""):
            res = c.get("/api/model", headers={"host": host})
            assert res.status_code == 403 and "answers only to localhost" in res.json()["detail"], host
            assert res.headers["x-content-type-options"] == "nosniff"
        assert c.post("/api/render", json={"seed": 1, "size": 16}, headers={"host": "evil.example"}).status_code == 403
        for host in ("localhost", "localhost.:8000", "127.0.0.1:8000", "127.5.0.1", "[::1]:8000", "app.localhost"):
            assert c.get("/api/model", headers={"host": host}).status_code == 200, host
        configure_hosts(app, "127.0.0.1")
        assert c.get("/api/model", headers={"host": "evil.example"}).status_code == 403
        configure_hosts(app, "0.0.0.0")  # --host 0.0.0.0: any name
        assert c.get("/api/model", headers={"host": "evil.example"}).status_code == 200


@pytest.mark.parametrize("raw,ctype", [(b"\x80abc", "application/json"), (b"{not json", "application/json"),
                                       (b'{"seed": 1', "application/json"), (b"seed=1", "application/x-www-form-urlencoded")])
def test_unparseable_bodies_get_422_and_the_schema_says_so(client, raw, ctype):
    res = client.post("/api/render", content=raw, headers={"content-type": ctype})
    assert res.status_code == 422, res.text
    assert isinstance(res.json()["detail"], str) and "\n" not in res.json()["detail"]


def test_openapi_declares_errors_and_knob_names(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/render", "/api/readings", "/api/strip"):
        responses = spec["paths"][path]["post"]["responses"]
        assert "400" not in responses and {"422", "413", "503"} <= set(responses), path
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorOut"]["properties"]["detail"]["type"] == "string"
    edit = schemas["EditIn"]["properties"]
    assert edit["knob"]["enum"] == NAMES and edit["locks"]["items"]["enum"] == NAMES + ["identity"]  # keep the person
    assert schemas["StripIn"]["properties"]["knob"]["enum"] == NAMES
    # and validation uses the enum, with the library's message
    res = client.post("/api/render", json={"seed": 1, "edits": [_edit(knob="hapy")]})
    assert res.status_code == 422 and "unknown feature 'hapy'; valid names: happy" in res.json()["detail"]


def test_edits_times_locks_is_capped(client, monkeypatch):
    from tlgan.apps.web import schemas

    assert schemas.MAX_EDIT_LOCKS == 3000  # 500 edits under 6 locks each: ~0.2 s of replay
    monkeypatch.setattr(schemas, "MAX_EDIT_LOCKS", 100)  # the test axes have only 6 knobs
    locks = ["yaw", "brightness", "warmth", "noise"]
    ok = [_edit(op="step", value=0.01 * (-1) ** i, locks=locks) for i in range(25)]
    assert client.post("/api/render", json={"seed": 1, "edits": ok, "size": 16}).status_code == 200
    res = client.post("/api/render", json={"seed": 1, "edits": ok + [_edit(locks=["yaw"])], "size": 16})
    assert res.status_code == 422 and "edits × locks" in res.json()["detail"] and "101" in res.json()["detail"]


def test_queue_limit_gives_503_with_retry_after_and_cheap_endpoints_keep_answering(model):
    import time

    generator, axes = model
    app = create_app(SlowGenerator(generator, 0.4), axes, None, workers=1, max_pending=2)
    with LiveServer(app) as server:
        results: list = []

        def heavy(i):
            with httpx.Client(base_url=server.url, timeout=60) as http:
                res = http.post("/api/render", json={"seed": i, "size": 16})
                results.append((res.status_code, res.headers.get("retry-after")))

        threads = [threading.Thread(target=heavy, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.15)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            start = time.perf_counter()
            assert http.get("/api/model").status_code == 200
            assert time.perf_counter() - start < 0.3  # not behind the slow renders
        for t in threads:
            t.join()
    codes = sorted(code for code, _ in results)
    assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}
    assert all(int(after) >= 1 for code, after in results if code == 503)


def test_work_pool_refuses_requests_that_waited_too_long():
    import asyncio
    import time

    from tlgan.apps.web.work import Busy, WorkPool

    pool = WorkPool(workers=1, max_pending=10, max_wait_s=0.2)

    async def main():
        first = asyncio.ensure_future(pool.run(time.sleep, 0.6))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy) as info:
            await pool.run(lambda: "late")
        assert info.value.retry_after >= 1
        await first
        assert await pool.run(lambda: "in time") == "in time"
        assert pool.admitted == 0

    try:
        asyncio.run(main())
    finally:
        pool.close()


def test_check_reports_how_much_of_a_state_replays(client):
    res = client.post("/api/check", json={"seed": 1, "locks": ["yaw", "gone"], "edits": [
        _edit(value=1.0), _edit(knob="warmth", value=1.0, locks=["happy"]), _edit(knob="happy", locks=["happy"]),
        _edit(knob="yaw")]}).json()
    assert res == {"valid_edits": 2, "detail": "knob 'happy' is locked; unlock it to move it", "valid_locks": ["yaw"]}
    res = client.post("/api/check", json={"seed": 1, "edits": [_edit(knob="nosuch")]}).json()
    assert res["valid_edits"] == 0 and "unknown feature 'nosuch'" in res["detail"]
    res = client.post("/api/check", json={"seed": 1, "edits": [_edit(op="step", value=9.0), _edit(op="step", value=9.0)]})
    assert res.json()["valid_edits"] == 1 and "±10σ" in res.json()["detail"]


# ---- trust at a glance: leaks, evaluation report -------------------------------------------
def test_largest_leaks_skip_the_knobs_own_feature_and_small_effects():
    from tlgan.apps.web.leaks import largest_leaks

    matrix = [[1.2, -0.5, 0.05, 0.3], [0.2, 0.9, -0.7, float("nan")]]
    out = largest_leaks(matrix, ["smile", "tilt"], ["smile", "mouth", "tilt", "age"], {"smile": "smile", "tilt": None})
    assert out == {"smile": [{"feature": "mouth", "effect": -0.5}, {"feature": "age", "effect": 0.3}],
                   "tilt": [{"feature": "mouth", "effect": 0.9}, {"feature": "smile", "effect": 0.2}]}


@pytest.mark.slow
def test_leak_table_is_computed_once_and_cached_on_disk(model, tmp_path):
    import time

    from tlgan.apps.web.leaks import LeakTable
    from tlgan.evaluation.evaluate import evaluate

    generator, axes = model
    table = LeakTable(generator, axes, StatsExtractor(), tmp_path, faces=6)
    deadline = time.monotonic() + 120
    while table.status == "computing" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert table.status == "ready", table.status
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    # the library's own re-scoring matrix, ranked
    data = evaluate(generator, StatsExtractor(), axes, n=6, seed=table.data["seed"], locked=False, strip_faces=0,
                    progress=False).to_dict()
    row = data["rescoring"]["values"][NAMES.index("noise")]
    strongest = max((abs(v), f) for f, v in zip(data["features"], row))[1]
    assert table.data["leaks"]["noise"][0]["feature"] == strongest
    again = LeakTable(generator, axes, StatsExtractor(), tmp_path, faces=6)
    assert again.status == "ready" and again.data == table.data and not hasattr(again, "_thread")


def test_leaks_endpoint_and_report_folder(model, tmp_path, client):
    assert client.get("/api/leaks").json() == {"status": "off", "detail": None}
    (tmp_path / "index.html").write_text("<h1>evaluation</h1>")
    (tmp_path / "matrix.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    (tmp_path / "notes.txt").write_text("not served")
    generator, axes = model
    with TestClient(create_app(generator, axes, None, report=tmp_path), base_url=LOCAL) as c:
        assert c.get("/api/model").json()["report"] == "report/index.html"
        assert c.get("/report/index.html").text == "<h1>evaluation</h1>"
        assert c.get("/report/matrix.png").headers["content-type"] == "image/png"
        assert c.get("/report/notes.txt").status_code == 404
        (tmp_path / "index.html").write_text("changed")  # read once, at start-up
        assert c.get("/report/index.html").text == "<h1>evaluation</h1>"
    with pytest.raises(TlganError, match="not an evaluation report"):
        create_app(generator, axes, None, report=tmp_path / "nope")


# ---- export ------------------------------------------------------------------------------
def test_png_metadata_holds_the_state(client, model):
    from PIL import Image as PILImage

    body = {"seed": 11, "edits": EDITS, "locks": ["yaw"], "size": 128}
    plain = client.post("/api/render", json=body).content
    tagged = client.post("/api/render", json={**body, "meta": True}).content
    assert tagged == client.post("/api/render", json={**body, "meta": True}).content  # same state, same bytes
    import io

    with PILImage.open(io.BytesIO(tagged)) as image:
        stored = json.loads(image.text["tlgan"])
        assert np.array_equal(np.asarray(image.convert("RGB")), decode(plain))
    assert stored == {"seed": 11, "edits": EDITS, "locks": ["yaw"]}
    editor = Editor.replay(*model, stored["seed"], [Edit.from_dict(e) for e in stored["edits"]])
    assert np.array_equal(decode(plain), np.asarray(to_pil(editor.render(), 128)))


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_sweep_animation(client, model, fmt):
    import io

    from PIL import Image as PILImage

    body = {"seed": 9, "knob": "brightness", "span": 2.0, "frames": 5, "size": 32, "format": fmt, "frame_ms": 50}
    res = client.post("/api/sweep", json=body)
    assert res.status_code == 200 and res.headers["content-type"] == f"image/{fmt}"
    assert res.content == client.post("/api/sweep", json=body).content
    with PILImage.open(io.BytesIO(res.content)) as image:
        assert image.n_frames == 8 and image.size == (32, 32)  # −2 … +2 and back: 5 + 3
        image.seek(4)
        last = np.asarray(image.convert("RGB"))
    if fmt == "webp":  # lossless: exactly the editor's picture at +2σ
        generator, axes = model
        editor = Editor(generator, axes, 9)
        editor.set("brightness", 2.0)
        assert np.array_equal(last, np.asarray(to_pil(editor.render(), 32)))
    assert client.post("/api/sweep", json={**body, "knob": "nope"}).status_code == 422


# ---- blending two faces ----------------------------------------------------------------------
def test_mix_blends_two_faces_and_edits_apply_on_top(client, model):
    from tlgan.sampling.latents import latent_for_seed, slerp

    generator, axes = model

    def render(body):
        res = client.post("/api/render", json={"size": 64, **body})
        assert res.status_code == 200, res.text
        return decode(res.content), json.loads(res.headers["x-knob-values"])

    a, _ = render({"seed": 3})
    b, _ = render({"seed": 8})
    assert np.array_equal(render({"seed": 3, "mix": {"seed": 8, "t": 0.0}})[0], a)
    assert np.abs(render({"seed": 3, "mix": {"seed": 8, "t": 1.0}})[0].astype(int) - b).max() <= 1
    half, _ = render({"seed": 3, "mix": {"seed": 8, "t": 0.5}})
    z = slerp(latent_for_seed(3, 100), latent_for_seed(8, 100), 0.5)
    assert abs(float(z.norm()) - (latent_for_seed(3, 100).norm() + latent_for_seed(8, 100).norm()) / 2) < 1e-4
    with torch.inference_mode():
        assert np.array_equal(half, np.asarray(to_pil(generator(z.float()[None])[0], 64)))
    _, values = render({"seed": 3, "mix": {"seed": 8, "t": 0.5}, "edits": [_edit(value=2.0)]})
    assert values[NAMES.index("happy")] == pytest.approx(2.0, abs=1e-9)
    for bad in ({"seed": 8, "t": 1.5}, {"seed": -1, "t": 0.5}, {"seed": 8}, {"seed": 8, "t": 0.5, "x": 1}):
        assert client.post("/api/render", json={"seed": 3, "mix": bad}).status_code == 422


# ---- several knob sets ---------------------------------------------------------------------
def test_several_knob_sets_in_one_app(model):
    from webtools import subset_axes

    from tlgan.apps.web import create_multi_app

    generator, axes = model
    light = subset_axes(axes, ["yaw", "brightness", "warmth"])
    app = create_multi_app(generator, [("faces", axes), ("light", light)], StatsExtractor())
    with TestClient(app, base_url=LOCAL) as c:
        first, second = c.get("/api/model").json(), c.get("/sets/light/api/model").json()
        listing = [{"name": "faces", "url": "/"}, {"name": "light", "url": "/sets/light/"}]
        assert first["sets"] == second["sets"] == listing and (first["set"], second["set"]) == ("faces", "light")
        assert [k["name"] for k in second["knobs"]] == ["yaw", "brightness", "warmth"]
        assert c.get("/sets/light/").status_code == 200 and c.get("/sets/light/static/app.js").status_code == 200
        edit = {"op": "set", "knob": "brightness", "value": 1.5, "locks": ["yaw"]}
        res = c.post("/sets/light/api/render", json={"seed": 4, "edits": [edit], "size": 64})
        _, pixels = expected(model, 4, [edit], size=64)
        assert res.status_code == 200 and np.array_equal(decode(res.content), pixels)
        assert json.loads(res.headers["x-knob-values"])[1] == pytest.approx(1.5, abs=1e-9)
        bad = c.post("/sets/light/api/render", json={"seed": 4, "edits": [_edit()]})
        assert bad.status_code == 422 and "unknown feature 'happy'" in bad.json()["detail"]
        assert c.get("/sets/light/api/model", headers={"host": "evil.example"}).status_code == 403
    with pytest.raises(TlganError, match="different names"):
        create_multi_app(generator, [("a", axes), ("a", light)], None)


def test_work_pool_finishes_started_requests_before_newer_ones():
    import asyncio
    import time

    from tlgan.apps.web.work import WorkPool

    pool = WorkPool(workers=1, max_pending=10)
    order: list[str] = []

    def step(name):
        time.sleep(0.1)
        order.append(name)

    async def request(name, delay):
        await asyncio.sleep(delay)
        async with pool.slot() as admitted:
            await pool.call(admitted, step, name + "1")
            await pool.call(admitted, step, name + "2")

    async def main():
        await asyncio.gather(request("A", 0), request("B", 0.02), request("C", 0.04))

    try:
        asyncio.run(main())
    finally:
        pool.close()
    assert sorted(order) == ["A1", "A2", "B1", "B2", "C1", "C2"]
    assert order.index("A2") < order.index("C1")  # FIFO would run every first step before any second one
