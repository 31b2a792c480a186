"""The HTTP API through FastAPI's in-process client, over the stub recommender and MovieLens-100K."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient
from stub_recommender import XSS_SCRIPT_TITLE, StubRecommender

from instructrec.serve import ServeLimits, ServeSettings, create_app


def test_happy_path_known_user(client, stub):
    r = client.post("/v1/recommend", json={"user_id": "196", "request": "I want a star wars adventure", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [it["item_id"] for it in body["items"]]
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    assert len(set(ids)) == 5
    seen = {str(stub.dataset.item_ids[i]) for i in stub.dataset.sequences[stub.dataset.user_index("196")]}
    assert not seen & set(ids)
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["items"][0]["title"] == "Star Wars"
    assert body["aspects"].startswith("P1,") and body["template_id"] == "stub-popularity"
    assert "a star wars adventure" in body["instruction"]
    assert body["elapsed_ms"] >= 0


def test_history_by_titles_and_ids_and_cold_start(client):
    r = client.post("/v1/recommend", json={"history": ["Usual Suspects, The", "50"], "request": "", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["aspects"] == "P1,I0,T3" and body["request_kind"] == "none"
    assert "Star Wars" not in [it["title"] for it in body["items"]]  # seen, so excluded
    cold = client.post("/v1/recommend", json={"request": "something funny for my kids"}).json()
    assert cold["aspects"].startswith("P0,") and len(cold["items"]) == 10
    assert any("cold start" in n for n in cold["notes"])


def test_unknown_history_item_and_candidate_are_404_with_message_and_cost_no_model_call(client, stub):
    r = client.post("/v1/recommend", json={"history": ["Star Wars", "No Such Film 1234"]})
    assert r.status_code == 404 and "No Such Film 1234" in r.json()["detail"] and "/v1/items" in r.json()["detail"]
    r = client.post("/v1/recommend", json={"user_id": "196", "candidates": ["50", "nope-999"]})
    assert r.status_code == 404 and "nope-999" in r.json()["detail"]
    assert stub.calls == 0  # answered before waiting for the model
    # Matched as the recommender matches: ids, titles case-insensitively, surrounding spaces ignored.
    r = client.post("/v1/recommend", json={"history": [" star wars ", "258"], "candidates": ["CONTACT", "100"]})
    assert r.status_code == 200 and [it["item_id"] for it in r.json()["items"]] == ["100"]  # 258 is seen


def test_candidates_restrict_the_ranking(client):
    r = client.post("/v1/recommend", json={"request": "x", "candidates": ["1", "2", "3"], "k": 10})
    assert r.status_code == 200
    assert sorted(it["item_id"] for it in r.json()["items"]) == ["1", "2", "3"]


def test_unknown_user_is_404_and_says_to_send_history(client):
    r = client.post("/v1/recommend", json={"user_id": "no-such-user", "request": "anything"})
    assert r.status_code == 404
    assert "history" in r.json()["detail"] and "no-such-user" in r.json()["detail"]
    assert client.get("/v1/users/no-such-user").status_code == 404


def test_malformed_json_is_422(client):
    r = client.post("/v1/recommend", content=b'{"user_id": "196", "k": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["message"]


@pytest.mark.parametrize(("body", "reason"), [
    (b'?\xff', "it is not UTF-8 text"),
    (b'{"request": "caf\xe9 au lait"}', "it is not UTF-8 text"),  # Latin-1, not UTF-8
    (b"[" * 20_000 + b"]" * 20_000, "it nests too deeply"),
])
def test_undecodable_body_is_the_documented_422_not_400(client, body, reason):
    r = client.post("/v1/recommend", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["message"] == f"the body is not valid JSON ({reason})"
    assert r.json()["detail"][0]["type"] == "json_invalid"
    assert "422" in client.get("/openapi.json").json()["paths"]["/v1/recommend"]["post"]["responses"]


def test_body_types_are_json_schema_types(client):
    """No coercion the schema does not describe: 10.0 is an integer, "10", true and 0-for-false are errors."""
    assert client.post("/v1/recommend", json={"user_id": "196", "k": 3.0}).status_code == 200
    assert len(client.post("/v1/recommend", json={"user_id": "196", "k": 3.0}).json()["items"]) == 3
    for field, bad in (("k", {"user_id": "196", "k": "3"}), ("k", {"user_id": "196", "k": True}),
                       ("k", {"user_id": "196", "k": 3.5}), ("exclude_seen", {"user_id": "196", "exclude_seen": 0}),
                       ("exclude_seen", {"user_id": "196", "exclude_seen": "false"}), ("user_id", {"user_id": 196}),
                       ("history", {"history": "Star Wars"}), ("request", {"history": ["Star Wars"], "request": 5})):
        r = client.post("/v1/recommend", json=bad)
        assert r.status_code == 422 and r.json()["message"].startswith(f"{field}"), (bad, r.text)


@pytest.mark.parametrize("k", [0, 51, -3])
def test_k_out_of_range_is_422(client, k):
    r = client.post("/v1/recommend", json={"user_id": "196", "k": k})
    assert r.status_code == 422
    assert "k:" in r.json()["message"]
    if k > 0:
        assert "max_k=50" in r.json()["message"]


def test_limits_on_text_and_history_are_named(client):
    r = client.post("/v1/recommend", json={"request": "x" * 1001})
    assert r.status_code == 422 and "max_request_chars=1000" in r.json()["message"]
    r = client.post("/v1/recommend", json={"history": ["50"] * 201})
    assert r.status_code == 422 and "max_history=200" in r.json()["message"]
    r = client.post("/v1/recommend", json={"history": ["y" * 301]})
    assert r.status_code == 422 and "max_item_chars=300" in r.json()["message"]
    r = client.post("/v1/recommend", json={"user_id": "196", "history": ["50"]})
    assert r.status_code == 422 and "either user_id or history" in r.json()["message"]
    r = client.post("/v1/recommend", json={"user": "196"})  # a typo is an error, not silently ignored
    assert r.status_code == 422 and "user" in r.json()["message"]


def test_oversized_body_is_413_with_declared_or_chunked_length(client):
    big = b'{"request": "' + b"x" * 70_000 + b'"}'
    r = client.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the middleware must count the streamed bytes
        for _ in range(20):
            yield b"x" * 8192

    r = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_configured_limits_are_enforced_and_documented(stub):
    settings = ServeSettings(limits=ServeLimits(max_k=5, max_body_bytes=2000))
    with TestClient(create_app(stub, settings)) as c:
        assert c.post("/v1/recommend", json={"user_id": "196", "k": 5}).status_code == 200
        r = c.post("/v1/recommend", json={"user_id": "196", "k": 6})
        assert r.status_code == 422 and "max_k=5" in r.json()["message"]
        assert c.post("/v1/recommend", json={"history": ["Usual Suspects, The"] * 150}).status_code == 413
        schema = c.get("/openapi.json").json()
        req = schema["components"]["schemas"]["RecommendRequest"]["properties"]
        assert req["k"]["maximum"] == 5
        assert set(schema["paths"]) >= {"/v1/recommend", "/v1/items", "/healthz", "/v1/users/{user_id}"}
        assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
        assert c.get("/healthz").json()["limits"]["max_k"] == 5


def test_openapi_examples_are_the_served_catalogues_and_are_answered(client, stub):
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["RecommendRequest"]
    examples = request["examples"]
    assert examples == [
        {"user_id": "196", "request": "something funny to watch with my kids", "k": 5},
        {"history": ["Star Wars", "Contact"], "request": "I want a space adventure", "k": 10},  # most rated
    ]
    for example in examples:
        r = client.post("/v1/recommend", json=example)
        assert r.status_code == 200 and len(r.json()["items"]) == example["k"], r.text
    # The schema states the one cross-field rule the validator has.
    assert request["not"]["required"] == ["user_id", "history"]


def test_openapi_examples_follow_another_catalogue(serve_dataset):
    from instructrec.data import Dataset
    from instructrec.data.dataset import Manifest

    ds = serve_dataset
    items = ds.items.copy()
    items["item_id"] = "g-" + items["item_id"].astype(str)
    items["title"] = "Game " + items["item_id"]
    inter = ds.interactions.copy()
    inter["item_id"] = "g-" + inter["item_id"].astype(str)
    inter["user_id"] = "player-" + inter["user_id"].astype(str)
    other = Dataset(items, inter, ds.reviews, Manifest(source="renamed"))
    with TestClient(create_app(StubRecommender(other))) as c:
        examples = c.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["examples"]
        assert examples[0]["user_id"] == "player-196" and examples[1]["history"] == ["Game g-50", "Game g-258"]
        assert all(c.post("/v1/recommend", json=e).status_code == 200 for e in examples)


def test_docs_pages_reference_only_this_server_under_a_csp(client):
    import base64
    import hashlib
    import re

    for page, assets in (("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]), ("/redoc", ["redoc.standalone.js"])):
        r = client.get(page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls  # no CDN
        for name in assets:
            assert f"/docs-static/{name}" in urls
            asset = client.get(f"/docs-static/{name}")
            assert asset.status_code == 200 and len(asset.content) > 100_000
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "https:" not in csp
        for script in re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL):  # inline: allowed by hash only
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


def test_title_search(client):
    r = client.get("/v1/items", params={"q": "star wars"})
    assert r.status_code == 200
    assert ("50", "Star Wars") in [(it["item_id"], it["title"]) for it in r.json()["items"]]
    assert client.get("/v1/items", params={"q": ""}).status_code == 422
    r = client.get("/v1/items", params={"q": "a" * 201})
    assert r.status_code == 422 and "max_query_chars=200" in r.json()["message"]
    assert client.get("/v1/items", params={"q": "the", "limit": 51}).status_code == 422


def test_user_summary_and_healthz(client):
    user = client.get("/v1/users/196").json()
    assert user["n_interactions"] == 39 and len(user["recent"]) == 10
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["users"] == 943 and health["items"] == 1685


def test_xss_title_is_plain_data_in_json_and_page_cannot_inject(client):
    r = client.post("/v1/recommend", json={"request": "alert", "k": 1})
    assert r.json()["items"][0]["title"] == XSS_SCRIPT_TITLE  # data, verbatim, in a JSON string
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-content-type-options"] == "nosniff"
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>alert" not in page.text
    js = client.get("/static/app.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js, sink
    assert "textContent" in js


def test_no_cors_unless_configured(stub):
    headers = {"Origin": "https://example.org"}
    with TestClient(create_app(stub)) as c:
        assert "access-control-allow-origin" not in c.get("/healthz", headers=headers).headers
    with TestClient(create_app(stub, ServeSettings(cors_origins=("https://example.org",)))) as c:
        assert c.get("/healthz", headers=headers).headers["access-control-allow-origin"] == "https://example.org"
        other = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_loader_runs_once_at_startup(serve_dataset):
    calls = []

    def loader():
        calls.append(1)
        return StubRecommender(serve_dataset)

    app = create_app(loader)
    with TestClient(app) as c:
        assert calls == [1]
        for _ in range(3):
            assert c.post("/v1/recommend", json={"user_id": "196", "k": 2}).status_code == 200
    assert calls == [1]


async def _fire(app, n: int) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        payloads = [{"user_id": str(u), "request": "a comedy", "k": 3} for u in (196, 186, 22, 244, 166, 298, 115, 253)]
        return await asyncio.gather(*(c.post("/v1/recommend", json=payloads[i % 8]) for i in range(n)))


def test_concurrent_requests_are_serialised(serve_dataset):
    slow = StubRecommender(serve_dataset, delay_s=0.03)
    responses = asyncio.run(_fire(create_app(slow), 12))
    assert [r.status_code for r in responses] == [200] * 12
    assert slow.calls == 12 and slow.max_active == 1


def test_full_queue_answers_503_naming_the_limit(serve_dataset):
    slow = StubRecommender(serve_dataset, delay_s=0.1)
    responses = asyncio.run(_fire(create_app(slow, ServeSettings(limits=ServeLimits(max_queue=2))), 6))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 503 in codes
    refused = next(r for r in responses if r.status_code == 503)
    assert "max_queue" in refused.json()["detail"] and refused.headers["retry-after"] == "1"


def test_a_caller_who_left_while_waiting_costs_no_model_call(stub):
    """Raw ASGI: the body arrives, then the client disconnects; the recommender is never called."""
    app = create_app(stub)
    body = b'{"user_id": "196", "k": 3}'
    messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/recommend", "raw_path": b"/v1/recommend", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 499 and stub.calls == 0
