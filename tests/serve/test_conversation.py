"""Conversations over HTTP: turns travel with the request, are validated, and hold no server state.

The real `Recommender` (tiny random Llama, popularity + BM25) over MovieLens-100K, saved once and
loaded by two separate app instances, stands in for two server processes behind a load balancer.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from instructrec.serve import create_app, load_recommender
from instructrec.serve.settings import ServeLimits, ServeSettings


@pytest.fixture(scope="module")
def saved(tmp_path_factory, movielens, tiny_llama_dir):
    from instructrec.candidates.base import create_retriever
    from instructrec.candidates.popularity import Popularity
    from instructrec.model.backend import load_model
    from instructrec.recommender import Recommender, RecommenderSettings

    rec = Recommender(movielens, load_model(tiny_llama_dir, device="cpu"), Popularity().fit(movielens),
                      create_retriever("bm25").fit(movielens), RecommenderSettings(n_candidates=12))
    return rec.save(tmp_path_factory.mktemp("conv") / "recommender", model_source=tiny_llama_dir)


LIMITS = ServeLimits(max_turns=2, max_request_chars=60, max_k=5)


@pytest.fixture(scope="module")
def two_servers(saved):
    with TestClient(create_app(lambda: load_recommender(saved), ServeSettings(limits=LIMITS))) as a, \
            TestClient(create_app(lambda: load_recommender(saved), ServeSettings(limits=LIMITS))) as b:
        yield a, b


def test_a_follow_up_honours_both_turns_and_any_server_answers_alike(two_servers, movielens):
    a, b = two_servers
    first = a.post("/v1/recommend", json={"user_id": "196", "request": "a comedy", "k": 5}).json()
    assert first["constraints"] == ["category Comedy"]
    turns = [{"request": "a comedy", "items": [it["item_id"] for it in first["items"]]}]
    body = {"user_id": "196", "request": "something older", "k": 5, "conversation": turns}
    second = b.post("/v1/recommend", json=body).json()
    again = a.post("/v1/recommend", json=body).json()
    assert [it["item_id"] for it in second["items"]] == [it["item_id"] for it in again["items"]]
    items = movielens.items.set_index("item_id")
    shown_years = sorted(int(items.loc[i, "year"]) for i in turns[0]["items"])
    assert second["constraints"][0] == "category Comedy" and second["constraints"][1].startswith("year <= ")
    for it in second["items"]:
        assert "Comedy" in items.loc[it["item_id"], "categories"]  # turn 1 still holds
        assert int(items.loc[it["item_id"], "year"]) < shown_years[len(shown_years) // 2]  # turn 2: older
        assert it["reason"].startswith("matches Comedy")
    like = a.post("/v1/recommend", json={"user_id": "196", "request": "more like #2", "k": 5,
                                          "conversation": turns}).json()
    assert turns[0]["items"][1] not in [it["item_id"] for it in like["items"]]
    assert any("more like" in n for n in like["notes"])


def test_nothing_matches_is_a_clear_answer(two_servers):
    a, _ = two_servers
    r = a.post("/v1/recommend", json={"request": "a western from the 2010s", "k": 5})
    assert r.status_code == 200 and r.json()["nothing_matches"] and r.json()["items"] == []
    assert r.json()["constraints"] == ["category Western", "year 2010-2019"]


@pytest.mark.parametrize(("turns", "status", "limit"), [
    ([{"request": "a comedy"}] * 3, 422, "max_turns=2"),
    ([{"request": "x" * 61}], 422, "max_request_chars=60"),
    ([{"request": "a comedy", "items": ["1"] * 6}], 422, "max_k=5"),
    ([{"request": "a comedy", "items": ["1" * 400]}], 422, "max_item_chars=300"),
    ([{"request": "a comedy", "shown": ["1"]}], 422, "conversation.0.shown"),
    ([{"items": ["1"]}], 422, "conversation.0.request"),
    (["a comedy"], 422, "conversation.0"),
    ([{"request": "a comedy", "items": ["no-such-item"]}], 404, "conversation.0.items"),
])
def test_malformed_or_over_long_turns_get_a_4xx_naming_the_limit(two_servers, turns, status, limit):
    a, _ = two_servers
    r = a.post("/v1/recommend", json={"request": "cheaper", "conversation": turns})
    assert r.status_code == status, r.text
    assert limit in (r.json().get("message") or r.json()["detail"])


def test_a_reference_beyond_the_last_answer_is_an_error(two_servers):
    a, _ = two_servers
    r = a.post("/v1/recommend", json={"request": "more like #4", "conversation": [{"request": "a comedy",
                                                                                  "items": ["1", "2"]}]})
    assert r.status_code == 422 and "#4" in r.json()["detail"]
