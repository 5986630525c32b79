"""Taught knobs through the web API: create/refit/suggest/delete, bad input, the library on disk, shared links."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from webtools import KNOBS, StatsExtractor, web_model

from tlgan.apps.web import create_app
from tlgan.editing.active import MIN_LABELS, MIN_PER_CLASS, candidate_pool
from tlgan.editing.library import KnobLibrary, knob_code, make_knob
from tlgan.sampling.latents import latent_for_seed

NAMES = [k[0] for k in KNOBS]
D = 100
RULE = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(7)), dim=0)


def rule_labels(seeds, rule=RULE):
    return [{"seed": s, "label": int(float(latent_for_seed(s, D) @ rule) > 0)} for s in seeds]


def cos(a, b):
    return float(torch.nn.functional.cosine_similarity(torch.as_tensor(a).double(), b.double(), dim=0))


@pytest.fixture
def library(tmp_path):
    return KnobLibrary(tmp_path / "knobs")


def client_for(library, extractor=True, teacher="plain"):
    # the prior (a few hundred generator backward passes) is tested on its own, and its wiring below
    generator, axes = web_model()
    return TestClient(create_app(generator, axes, StatsExtractor() if extractor else None, library=library,
                                 teacher=teacher), base_url="http://127.0.0.1")


@pytest.fixture
def client(library):
    with client_for(library) as c:
        yield c


def test_create_lists_renders_and_saves_a_taught_knob(client, library):
    res = client.post("/api/knobs", json={"name": "glasses", "labels": rule_labels(range(60))})
    assert res.status_code == 200, res.text
    knob = res.json()
    info = client.get("/api/model").json()
    listed = {k["name"]: k for k in info["knobs"]}
    assert [k["name"] for k in info["knobs"]] == NAMES + ["glasses"] and info["groups"][-1] == "taught"
    assert {k: knob[k] for k in listed["glasses"]} == listed["glasses"]  # returned as /api/model lists it
    assert listed["glasses"]["group"] == "taught" and listed["glasses"]["shown"]
    assert knob["status"] == "saved" and knob["labels"] == 60 and 0.6 < knob["cv_accuracy"] <= 1
    assert knob["history"] == [[60, knob["cv_accuracy"]]]
    assert library.names() == ["glasses"]
    saved = library.load("glasses")
    assert cos(saved.axes[0], RULE) > 0.5  # the hidden rule, from 60 random labels in 100-d (chance: ~0.1)
    assert saved.params["taught"]["glasses"]["examples"][:2] == [[0, rule_labels([0])[0]["label"]],
                                                                  [1, rule_labels([1])[0]["label"]]]
    # usable like any knob: moved, locked while another moves
    state = {"seed": 3, "edits": [{"op": "set", "knob": "glasses", "value": 2.0, "locks": ["yaw"]},
                                  {"op": "step", "knob": "happy", "value": 0.8, "locks": ["glasses"]}],
             "locks": ["glasses"]}
    res = client.post("/api/render", json={**state, "size": 64})
    assert res.status_code == 200, res.text
    values = json.loads(res.headers["x-knob-values"])
    assert len(values) == len(NAMES) + 1 and values[-1] == pytest.approx(2.0, abs=1e-6)
    strip = client.post("/api/strip", json={"seed": 3, "knob": "glasses", "steps": 3, "size": 32})
    assert strip.status_code == 200 and json.loads(strip.headers["x-strip-values"]) == [-3.0, 0.0, 3.0]
    assert client.post("/api/readings", json=state).json()["values"]["glasses"] == pytest.approx(2.0, abs=1e-6)


def test_refit_extends_the_history_and_drafts_are_not_saved(client, library):
    first = client.post("/api/knobs", json={"name": "hat", "labels": rule_labels(range(20)), "save": False}).json()
    assert first["status"] == "draft" and library.names() == []
    assert "hat" in [k["name"] for k in client.get("/api/model").json()["knobs"]]
    res = client.post("/api/knobs", json={"name": "hat", "labels": rule_labels(range(40))})
    assert res.status_code == 422 and "already a taught knob 'hat'" in res.json()["detail"]
    second = client.post("/api/knobs", json={"name": "hat", "labels": rule_labels(range(80)), "replace": True}).json()
    assert [n for n, _ in second["history"]] == [20, 80] and second["status"] == "saved"
    assert library.names() == ["hat"]
    one = client.get("/api/knobs/hat").json()
    assert one["examples"] == rule_labels(range(80))
    listing = client.get("/api/knobs").json()
    assert listing["library"] == str(library.folder) and [k["name"] for k in listing["knobs"]] == ["hat"]
    assert listing["min_labels"] == MIN_LABELS and listing["min_per_class"] == MIN_PER_CLASS


def _one_class(n):
    return [{"seed": s, "label": 1} for s in range(n)]


BAD = [
    ({"name": "", "labels": rule_labels(range(30))}, "the knob needs a name"),
    ({"name": "two words", "labels": rule_labels(range(30))}, "bad axis name"),
    ({"name": "happy", "labels": rule_labels(range(30))}, "'happy' is a built-in knob; choose another name"),
    ({"name": "g", "labels": _one_class(30)}, "all 30 labels are 1 (has it)"),
    ({"name": "g", "labels": rule_labels(range(MIN_LABELS - 1))}, f"a knob needs at least {MIN_LABELS}"),
    ({"name": "g", "labels": [{"seed": s, "label": int(s < 2)} for s in range(30)]},
     f"with at least {MIN_PER_CLASS} of each"),
    ({"name": "g", "labels": [{"seed": -1, "label": 1}] + rule_labels(range(30))}, "labels.0.seed"),
    ({"name": "g", "labels": [{"seed": 2**63, "label": 1}] + rule_labels(range(30))}, "labels.0.seed"),
    ({"name": "g", "labels": [{"seed": "7", "label": 1}] + rule_labels(range(30))}, "labels.0.seed"),
    ({"name": "g", "labels": [{"seed": 1, "label": 2}] + rule_labels(range(2, 30))}, "labels.0.label"),
    ({"name": "g", "labels": rule_labels(range(30)) + rule_labels([3])}, "seed 3 is labelled twice"),
    ({"name": "g", "labels": rule_labels(range(30)), "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"labels": rule_labels(range(30))}, "name: Field required"),
]


@pytest.mark.parametrize("body,message", BAD)
def test_bad_knob_requests_get_one_line_422(client, library, body, message):
    res = client.post("/api/knobs", json=body)
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert message in detail and "\n" not in detail
    assert library.names() == [] and [k["name"] for k in client.get("/api/model").json()["knobs"]] == NAMES


def test_suggest_picks_uncertain_faces_and_some_random_ones(client):
    first = client.post("/api/knobs/suggest", json={"count": 16}).json()
    assert len(first["seeds"]) == 16 and set(first["reasons"]) == {"random"}
    labels = rule_labels(first["seeds"])
    res = client.post("/api/knobs/suggest", json={"labels": labels, "count": 16, "pool": 0})
    page = res.json()
    assert page == client.post("/api/knobs/suggest", json={"labels": labels, "count": 16}).json()  # repeatable
    assert not set(page["seeds"]) & set(first["seeds"])
    assert page["reasons"].count("random") == 4 and page["reasons"].count("uncertain") == 12
    seeds, z = candidate_pool(0, D)
    assert set(page["seeds"]) <= set(seeds.tolist())
    # the uncertain ones are the pool's faces closest to the current fit's boundary
    from tlgan.editing.active import quick_fit

    zl = torch.stack([latent_for_seed(x["seed"], D) for x in labels])
    w, b = quick_fit(zl, torch.tensor([x["label"] for x in labels]))
    margin = {int(s): abs(float(m)) for s, m in zip(seeds, z @ w + b)}
    unc = [margin[s] for s, r in zip(page["seeds"], page["reasons"]) if r == "uncertain"]
    assert max(unc) <= np.quantile(list(margin.values()), 0.02)
    for body, message in [({"count": 0}, "count"), ({"count": 65}, "count"), ({"pool": -1}, "pool"),
                          ({"labels": [{"seed": 1, "label": 1}, {"seed": 1, "label": 0}]}, "seed 1 is labelled twice")]:
        res = client.post("/api/knobs/suggest", json=body)
        assert res.status_code == 422 and message in res.json()["detail"], res.text


def test_delete(client, library):
    client.post("/api/knobs", json={"name": "beard", "labels": rule_labels(range(30))})
    assert (library.folder / "beard.safetensors").is_file()
    res = client.delete("/api/knobs/beard")
    assert res.status_code == 200 and res.json()["deleted"] == "beard"
    assert library.names() == [] and [k["name"] for k in client.get("/api/model").json()["knobs"]] == NAMES
    res = client.post("/api/render", json={"seed": 1, "edits": [{"op": "set", "knob": "beard", "value": 1}]})
    assert res.status_code == 422 and "unknown feature 'beard'" in res.json()["detail"]
    assert client.delete("/api/knobs/beard").status_code == 404
    res = client.delete("/api/knobs/happy")
    assert res.status_code == 422 and "built-in" in res.json()["detail"]


def test_the_library_survives_a_restart_and_foreign_knobs_are_refused(library):
    state = {"seed": 9, "edits": [{"op": "set", "knob": "smile2", "value": -1.5, "locks": ["brightness"]}],
             "locks": ["smile2"], "size": 64}
    with client_for(library) as first:
        first.post("/api/knobs", json={"name": "smile2", "labels": rule_labels(range(40))})
        image = first.post("/api/render", json=state).content
    # a knob taught on another generator, put into the same library
    other = make_knob("alien", [(x["seed"], x["label"]) for x in rule_labels(range(40))], "othergan:1234", D)
    library.save(other)
    with pytest.raises(Exception, match="taught knob 'alien' cannot be used here: axis set was made for generator "
                                        "'othergan:1234'"):
        library.load_for("alien", web_model()[0])
    with client_for(library) as second:
        assert [k["name"] for k in second.get("/api/model").json()["knobs"]] == NAMES + ["smile2"]
        assert second.post("/api/render", json=state).content == image
        notes = second.get("/api/knobs").json()["notes"]
        assert len(notes) == 1 and "alien" in notes[0] and "othergan:1234" in notes[0]
        res = second.post("/api/knobs", json={"name": "alien", "labels": rule_labels(range(40))})
        assert res.status_code == 422 and "for another generator" in res.json()["detail"]


def test_a_shared_knob_renders_the_same_image_on_a_server_that_never_saw_it(library, tmp_path):
    state = {"seed": 4, "edits": [{"op": "set", "knob": "specs", "value": 2.5, "locks": ["warmth"]},
                                  {"op": "step", "knob": "warmth", "value": 0.4, "locks": ["specs"]}],
             "locks": ["specs"], "size": 64}
    with client_for(library) as first:
        knob = first.post("/api/knobs", json={"name": "specs", "labels": rule_labels(range(50))}).json()
        image = first.post("/api/render", json=state)
    code = knob["code"]
    assert len(code) < 300 and knob_code(library.load("specs").axes[0], web_model()[0].identity) == code
    with client_for(KnobLibrary(tmp_path / "empty"), extractor=False) as second:
        res = second.post("/api/render", json=state)
        assert res.status_code == 422 and "unknown feature 'specs'" in res.json()["detail"]
        res = second.post("/api/knobs/shared", json={"name": "specs", "code": code})
        assert res.status_code == 200 and res.json()["status"] == "shared" and res.json()["code"] == code
        again = second.post("/api/render", json=state)
        assert again.content == image.content and again.headers["x-knob-values"] == image.headers["x-knob-values"]
        assert second.post("/api/knobs/shared", json={"name": "specs", "code": code}).status_code == 200  # idempotent
        assert KnobLibrary(tmp_path / "empty").names() == []  # a link's knob is served, not saved
        for body, message in [
            ({"name": "specs", "code": knob_code(torch.nn.functional.normalize(torch.ones(D), dim=0),
                                                 web_model()[0].identity)}, "differs from this server's taught knob"),
            ({"name": "x", "code": knob_code(RULE, "othergan:1")}, "knob 'x' was taught on another generator"),
            ({"name": "x", "code": code[:-8]}, "knob 'x'"),
            ({"name": "x", "code": "***"}, "not base64url"),
            ({"name": "happy", "code": code}, "built-in"),
        ]:
            res = second.post("/api/knobs/shared", json=body)
            assert res.status_code == 422 and message in res.json()["detail"], res.text


def test_the_app_fits_under_the_generator_sensitivity_prior(library, monkeypatch):
    # a planted sensitivity: the pictures respond only to the first 5 latent dimensions
    planted = torch.zeros(D, D, dtype=torch.float64)
    planted[:5, :5] = torch.eye(5) * D / 5
    calls = []
    monkeypatch.setattr("tlgan.editing.prior.cached_sensitivity", lambda gen: calls.append(gen) or planted)
    with client_for(library, teacher="sensitivity") as client:
        labels = rule_labels(range(40))
        assert client.post("/api/knobs/suggest", json={"labels": labels}).status_code == 200
        knob = client.post("/api/knobs", json={"name": "visible", "labels": labels}).json()
    assert len(calls) == 1  # measured once per server
    saved = library.load("visible")
    assert saved.params["taught"]["visible"]["prior"] == "sensitivity" and knob["labels"] == 40
    # pulled into the directions the pictures respond to (the hidden rule has ~5% of its energy there)
    assert float(saved.axes[0, :5].double().norm()) > 0.6
    plain = make_knob("plain", [(x["seed"], x["label"]) for x in labels], "g", D)
    assert float(plain.axes[0, :5].double().norm()) < 0.4


def test_the_app_teaches_from_the_pictures_by_default(library):
    # a rule a person could apply by eye: the left half of the face is lighter than the right
    generator, axes = web_model()
    seeds = list(range(40))
    with torch.inference_mode():
        faces = generator(torch.stack([latent_for_seed(s, D) for s in seeds]))
    luma = faces.mean(1)
    lighter = (luma[..., :32].mean((1, 2)) - luma[..., 32:].mean((1, 2)))
    labels = [{"seed": s, "label": int(v > lighter.median())} for s, v in zip(seeds, lighter.tolist())]
    with TestClient(create_app(generator, axes, None, library=library), base_url="http://127.0.0.1") as client:
        found = client.post("/api/knobs/suggest", json={"labels": labels, "count": 12}).json()
        knob = client.post("/api/knobs", json={"name": "lit_left", "labels": labels}).json()
    assert len(set(found["seeds"])) == 12 and set(found["seeds"]) <= set(candidate_pool(0, D)[0].tolist())
    assert library.load("lit_left").params["taught"]["lit_left"]["prior"] == "looks"
    assert knob["labels"] == 40 and knob["cv_accuracy"] > 0.6


def test_taught_knobs_join_the_openapi_names_and_refits_drop_cached_states(client):
    spec = lambda: client.get("/openapi.json").json()["components"]["schemas"]
    assert spec()["StripIn"]["properties"]["knob"]["enum"] == NAMES
    client.post("/api/knobs", json={"name": "glasses", "labels": rule_labels(range(40)), "save": False})
    assert spec()["StripIn"]["properties"]["knob"]["enum"] == NAMES + ["glasses"]
    state = {"seed": 5, "mix": {"seed": 9, "t": 0.5}, "edits": [{"op": "set", "knob": "glasses", "value": 2.0}],
             "size": 32}
    first = client.post("/api/render", json=state)
    # refit on other labels: the axis moves, so a state cached under the old one must not be reused
    flipped = [{"seed": x["seed"], "label": 1 - x["label"]} for x in rule_labels(range(40))]
    assert client.post("/api/knobs", json={"name": "glasses", "labels": flipped, "replace": True,
                                           "save": False}).status_code == 200
    second = client.post("/api/render", json=state)
    assert json.loads(second.headers["x-knob-values"])[-1] == pytest.approx(2.0, abs=1e-6)
    assert first.content != second.content
    client.delete("/api/knobs/glasses")
    assert spec()["StripIn"]["properties"]["knob"]["enum"] == NAMES


def test_each_knob_set_of_a_multi_set_app_teaches_into_the_shared_library(library):
    from webtools import subset_axes

    from tlgan.apps.web.sets import create_multi_app

    generator, axes = web_model()
    sets = [("all", axes), ("some", subset_axes(axes, NAMES[:2]))]
    with TestClient(create_multi_app(generator, sets, None, library=library, teacher="plain"),
                    base_url="http://127.0.0.1") as c:
        res = c.post("/sets/some/api/knobs", json={"name": "bangs", "labels": rule_labels(range(30))})
        assert res.status_code == 200, res.text
        assert [k["name"] for k in c.get("/sets/some/api/model").json()["knobs"]] == NAMES[:2] + ["bangs"]
        assert "bangs" not in [k["name"] for k in c.get("/api/model").json()["knobs"]]  # until a restart
        res = c.post("/sets/some/api/render", json={"seed": 2, "edits": [{"op": "set", "knob": "bangs", "value": 1}]})
        assert res.status_code == 200, res.text
    with TestClient(create_multi_app(generator, sets, None, library=library, teacher="plain"),
                    base_url="http://127.0.0.1") as c:
        for prefix in ("", "/sets/some"):
            assert "bangs" in [k["name"] for k in c.get(f"{prefix}/api/model").json()["knobs"]]
