"""Batching across requests (issue 12): the model thread scores every waiting request in one call,
and a batched answer is the answer the request would get alone."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from stub_recommender import StubRecommender

from instructrec.errors import InstructRecError
from instructrec.serve import ServeLimits, ServeSettings, create_app
from instructrec.serve.worker import BatchWorker, CallerGone, QueueFull, SerialWorker, load_on_model_thread

CALLS = [
    {"user_id": "196", "request": "I want a funny comedy", "k": 5},
    {"user_id": "186", "request": None, "k": 4},
    {"history": ["Star Wars", "50"], "request": "something scary", "k": 3},
    {"user_id": "22", "request": "a romantic film for tonight", "k": 6},
    {"user_id": "244", "request": "a comedy", "k": 5, "candidates": ["1", "2", "3", "4"]},
    {"history": ["Toy Story"], "k": 5},
]


@pytest.fixture(scope="module")
def tiny_recommender(movielens, tiny_llama_dir):
    from instructrec.candidates.popularity import Popularity
    from instructrec.model.backend import load_model
    from instructrec.recommender import Recommender
    from instructrec.recommender.recommender import RecommenderSettings

    return Recommender(movielens, load_model(tiny_llama_dir, device="cpu"), Popularity().fit(movielens),
                       settings=RecommenderSettings(n_candidates=8))


def _ranking(result):
    return [it.item_id for it in result.items], np.array([it.score for it in result.items])


def test_recommend_many_equals_one_call_at_a_time(tiny_recommender):
    alone = [tiny_recommender.recommend(**call) for call in CALLS]
    tiny_recommender.reranker.llm._memo.clear()  # score again, batched, rather than from the memo
    together = tiny_recommender.recommend_many(CALLS + [{"user_id": "nobody-at-all"}, {"k": 0}])
    assert isinstance(together[-2], InstructRecError) and isinstance(together[-1], InstructRecError)
    for one, batched in zip(alone, together, strict=False):
        assert _ranking(one)[0] == _ranking(batched)[0]
        np.testing.assert_allclose(_ranking(one)[1], _ranking(batched)[1], atol=1e-4)
        assert (one.instruction, one.aspects, one.template_id, one.notes) == (
            batched.instruction, batched.aspects, batched.template_id, batched.notes)


async def _fire(app, calls):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        return await asyncio.gather(*(c.post("/v1/recommend", json=call) for call in calls))


def test_batched_and_unbatched_serving_return_identical_rankings(tiny_recommender):
    sizes: list[int] = []
    many = tiny_recommender.recommend_many

    def spy(calls):
        sizes.append(len(calls))
        return many(calls)

    calls = CALLS * 2
    tiny_recommender.reranker.llm._memo.clear()
    unbatched = asyncio.run(_fire(create_app(tiny_recommender, ServeSettings(max_batch=1)), calls))
    tiny_recommender.reranker.llm._memo.clear()
    tiny_recommender.recommend_many = spy  # type: ignore[method-assign]
    try:
        batched = asyncio.run(_fire(create_app(tiny_recommender, ServeSettings(max_batch=8, batch_wait_ms=200)),
                                    calls))
    finally:
        del tiny_recommender.recommend_many
    assert max(sizes) > 1 and sum(sizes) == len(calls)  # requests did share model calls
    for one, other in zip(unbatched, batched, strict=True):
        assert one.status_code == other.status_code == 200, (one.text, other.text)
        a, b = one.json(), other.json()
        assert [it["item_id"] for it in a["items"]] == [it["item_id"] for it in b["items"]]
        np.testing.assert_allclose([it["score"] for it in a["items"]], [it["score"] for it in b["items"]],
                                   atol=1e-4)
        assert a["instruction"] == b["instruction"]


def test_stub_recommender_is_batched_one_call_after_the_other(serve_dataset):
    """A recommender without recommend_many is still served, its calls still one at a time."""
    slow = StubRecommender(serve_dataset, delay_s=0.02)
    calls = [{"user_id": u, "request": "a comedy", "k": 3} for u in ("196", "186", "22", "244")] * 3
    responses = asyncio.run(_fire(create_app(slow, ServeSettings(max_batch=4)), calls))
    assert [r.status_code for r in responses] == [200] * 12
    assert slow.calls == 12 and slow.max_active == 1


def _echo_worker(max_queue: int = 64, max_batch: int = 4, wait_ms: float = 20.0):
    batches: list[list[int]] = []

    def batch_fn(payloads):
        batches.append(list(payloads))
        return [ValueError(f"bad {p}") if p < 0 else p * 10 for p in payloads]

    return BatchWorker(SerialWorker("model", max_queue), batch_fn, max_batch, wait_ms), batches


def test_batches_keep_arrival_order_size_and_per_call_errors():
    worker, batches = _echo_worker(max_batch=4)

    async def main():
        tasks = [asyncio.ensure_future(worker.run(p)) for p in (1, 2, -3, 4, 5, 6)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        answers = asyncio.run(main())
    finally:
        worker.close()
    assert answers[:2] == [10, 20] and answers[3:] == [40, 50, 60]
    assert isinstance(answers[2], ValueError) and "bad -3" in str(answers[2])
    assert [p for b in batches for p in b] == [1, 2, -3, 4, 5, 6]  # first come, first served
    assert max(len(b) for b in batches) == 4 and len(batches) >= 2


def test_full_line_is_refused_and_gone_callers_are_skipped():
    worker, batches = _echo_worker(max_queue=3, max_batch=8)

    async def gone():
        return True

    async def main():
        tasks = [asyncio.ensure_future(worker.run(1)), asyncio.ensure_future(worker.run(2, gone=gone)),
                 asyncio.ensure_future(worker.run(3))]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await worker.run(4)
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        answers = asyncio.run(main())
    finally:
        worker.close()
    assert answers[0] == 10 and isinstance(answers[1], CallerGone) and answers[2] == 30
    assert [p for b in batches for p in b] == [1, 3]


def test_bad_batch_settings_get_one_clear_error():
    with pytest.raises(InstructRecError, match="max_batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(InstructRecError, match="batch_wait_ms"):
        ServeSettings(batch_wait_ms=-1)
    assert ServeSettings(limits=ServeLimits(max_queue=2)).max_batch >= 1


def test_server_reuses_a_users_prompt_prefix_with_the_same_answers(tiny_recommender):
    from fastapi.testclient import TestClient

    calls = [{"user_id": "196", "request": "I want a funny comedy", "k": 5},
             {"user_id": "196", "request": "I want a scary horror film", "k": 5},
             {"user_id": "186", "request": "I want a funny comedy", "k": 5},
             {"user_id": "196", "request": "I want a film about space", "k": 5}]
    answers = {}
    try:
        for entries in (0, 8):
            tiny_recommender.reranker.llm._memo.clear()
            with TestClient(create_app(tiny_recommender, ServeSettings(prefix_cache_entries=entries))) as c:
                answers[entries] = [c.post("/v1/recommend", json=call).json() for call in calls]
            cache = tiny_recommender.scorer.prefix_cache
            assert (cache is None) == (entries == 0)
        assert cache is not None and cache.tokens_reused > 0
    finally:
        tiny_recommender.use_prefix_cache(0)
    for plain, cached in zip(answers[0], answers[8], strict=True):
        assert [it["item_id"] for it in plain["items"]] == [it["item_id"] for it in cached["items"]]
        np.testing.assert_allclose([it["llm_score"] for it in plain["items"]],
                                   [it["llm_score"] for it in cached["items"]], atol=1e-4)


def test_a_model_loaded_on_its_thread_is_served_on_that_thread(serve_dataset):
    """`load_on_model_thread` runs the loader on the thread the server then runs every model call
    on (torch's CPU pool serves its first thread best); a failing loader raises its own error."""
    import threading

    threads: dict[str, int] = {}

    class Spy(StubRecommender):
        def recommend(self, **call):
            threads.setdefault("served", threading.get_ident())
            assert threading.get_ident() == threads["served"]
            return super().recommend(**call)

    def load():
        threads["loaded"] = threading.get_ident()
        return Spy(serve_dataset)

    rec, thread = load_on_model_thread(load)
    responses = asyncio.run(_fire(create_app(rec, ServeSettings(max_batch=2), thread), CALLS[:3]))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert threads["loaded"] == threads["served"] != threading.get_ident()

    def broken():
        raise InstructRecError("no such recommender")

    with pytest.raises(InstructRecError, match="no such recommender"):
        load_on_model_thread(broken)
