"""Every retriever learns the synthetic data's structure, beats popularity, and round-trips to disk."""

from __future__ import annotations

import numpy as np
import pytest

from instructrec.candidates.base import REGISTRY, create_retriever, load_retriever
from instructrec.data import leave_one_out
from instructrec.errors import InstructRecError, ModelError
from instructrec.eval.candidate_sets import random_candidates
from instructrec.eval.protocol import RetrieverScorer, evaluate
from instructrec.eval.queries import TitleKeywordQueries

FAST_SEQ = dict(hidden=32, epochs=25, lr=0.01, batch_size=64, patience=6, valid_users=200, progress=False)
SETTINGS = {
    "popularity": {},
    "bpr": dict(factors=16, iterations=100, learning_rate=0.05, valid_users=200, progress=False),
    "sasrec": dict(FAST_SEQ),
    "sasrec-ce": dict(FAST_SEQ, loss="ce", ce_negatives=50),
    "gru4rec": dict(FAST_SEQ, gru_hidden=32),
    "bert4rec": dict(FAST_SEQ, epochs=40),
    "bm25": {},
    "embedding": dict(progress=False),
    "dense": {},
    "hybrid": {},
}


@pytest.fixture(scope="module")
def split(synthetic_seq):
    return leave_one_out(synthetic_seq)


@pytest.fixture(scope="module")
def cands(synthetic_seq, split):
    return random_candidates(synthetic_seq, split, np.arange(len(split)), 9, seed=0)


@pytest.fixture(scope="module")
def fitted(synthetic_seq, split):
    cache = {}

    def get(key):
        if key not in cache:
            cache[key] = create_retriever(key.split("-")[0], **SETTINGS[key]).fit(synthetic_seq, split)
        return cache[key]

    return get


def _hr1(model, split, cands, **kw):
    return evaluate(RetrieverScorer(model, split), split, cands, progress=False, **kw).summary["HR@1"]["mean"]


def test_registry_has_every_retriever():
    from instructrec.candidates.base import _import_all

    _import_all()
    assert set(REGISTRY) == {"popularity", "bpr", "sasrec", "gru4rec", "bert4rec", "bm25", "embedding", "dense", "hybrid"}


@pytest.mark.parametrize("key", ["bpr", "sasrec", "sasrec-ce", "gru4rec", "bert4rec", "bm25", "embedding"])
def test_beats_popularity_on_structured_data(key, fitted, split, cands):
    pop = _hr1(fitted("popularity"), split, cands)
    got = _hr1(fitted(key), split, cands)
    assert pop < 0.2  # near random on this data
    assert got > pop + 0.3, f"{key}: HR@1 {got:.3f} vs popularity {pop:.3f}"


@pytest.mark.parametrize("key", ["bm25", "embedding", "dense", "hybrid"])
def test_text_retrievers_answer_search_queries(key, fitted, synthetic_seq, split, cands):
    queries = TitleKeywordQueries(synthetic_seq, n_words=2)
    got = _hr1(fitted(key), split, cands, task="search", queries=queries)
    assert got > 0.5
    top = fitted(key).search("galaxy adventure", k=5)
    assert all("galaxy" in synthetic_seq.title(i) for i in top.items)


@pytest.mark.parametrize("key", ["popularity", "bpr", "sasrec", "gru4rec", "bert4rec", "bm25", "embedding",
                                 "dense", "hybrid"])
def test_save_load_round_trip(key, fitted, split, tmp_path):
    model = fitted(key)
    back = load_retriever(model.save(tmp_path / key))
    hists = [split.history(r, "test") for r in range(8)]
    users = split.users[:8]
    cand = np.tile(np.arange(12), (8, 1))
    assert np.allclose(model.score(hists, cand, users=users), back.score(hists, cand, users=users), atol=1e-5)
    assert np.allclose(model.score(hists, None, users=users), back.score(hists, None, users=users), atol=1e-5)
    assert back.settings == model.settings


def test_recommend_excludes_seen_and_ranks(fitted, split):
    model = fitted("sasrec")
    hist = split.history(0, "test")
    top = model.recommend(hist, k=10)
    assert len(top) == 10 and not set(top.items) & set(hist.tolist())
    assert (np.diff(top.scores) <= 0).all()
    with_seen = model.recommend(hist, k=model.n_items, exclude_seen=False)
    assert len(with_seen) == model.n_items


def test_user_errors(tmp_path, fitted):
    with pytest.raises(InstructRecError, match="unknown retriever"):
        create_retriever("nope")
    with pytest.raises(InstructRecError, match="unknown setting"):
        create_retriever("sasrec", hiddne=3)
    with pytest.raises(ModelError, match="holds no saved retriever"):
        load_retriever(tmp_path)
    with pytest.raises(ModelError, match="not fitted"):
        create_retriever("sasrec").recommend(np.array([1, 2]))
    with pytest.raises(ModelError, match="not text"):
        fitted("popularity").search("dragon")


def test_interrupted_training_resumes_to_the_same_model(synthetic_seq, split, tmp_path):
    base = dict(hidden=16, epochs=4, lr=0.01, batch_size=64, patience=10, valid_users=100, progress=False)
    straight = create_retriever("gru4rec", **base).fit(synthetic_seq, split)
    ckpt = str(tmp_path / "gru.ckpt")
    create_retriever("gru4rec", **dict(base, epochs=2, checkpoint=ckpt)).fit(synthetic_seq, split)
    resumed = create_retriever("gru4rec", **dict(base, checkpoint=ckpt)).fit(synthetic_seq, split)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    assert [round(h["loss"], 6) for h in resumed.history_] == [round(h["loss"], 6) for h in straight.history_]
    hists = [split.history(r, "test") for r in range(5)]
    assert np.allclose(straight.score(hists), resumed.score(hists), atol=1e-5)
    with pytest.raises(ModelError, match="other settings"):
        create_retriever("gru4rec", **dict(base, hidden=8, checkpoint=ckpt)).fit(synthetic_seq, split)


@pytest.mark.parametrize("key", ["sasrec", "embedding"])
def test_thread_setting_does_not_leak_into_the_process(key, synthetic_seq, split, cands):
    """A retriever's `threads` applies to its own work only: the LLM reranker that runs after
    retrieval in the same process must keep the process's thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        model = create_retriever(key, **dict(SETTINGS[key], threads=1, **({"epochs": 1} if key == "sasrec" else {})))
        model.fit(synthetic_seq, split)
        assert torch.get_num_threads() == 3
        model.score([split.history(0, "test")], cands.items[:1])
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_dense_and_hybrid_match_meanings_over_the_whole_item_text():
    """A request that names no title word finds items by their genre and year (MiniLM reads the
    whole text); the hybrid keeps that and still ranks an exact title word first."""
    import pandas as pd

    from instructrec.data.dataset import Dataset

    items = pd.DataFrame({
        "item_id": [str(i) for i in range(6)],
        "title": ["Night Visitors", "Big Night", "Happy Days", "The Haunting", "Space Cadets", "Laugh Track"],
        "categories": [["Horror"], ["Comedy"], ["Comedy"], ["Horror", "Thriller"], ["Sci-Fi"], ["Comedy"]],
        "year": [1980, 1996, 1995, 1963, 1999, 1990],
    })
    inter = pd.DataFrame({"user_id": ["u0", "u0", "u1", "u1"], "item_id": ["0", "2", "4", "5"],
                          "timestamp": [0, 1, 0, 1]})
    ds = Dataset.from_frames(items, inter, source="toy")
    split = leave_one_out(ds)
    for key in ("dense", "hybrid"):
        model = create_retriever(key).fit(ds, split)
        top = model.search("a scary, frightening film", k=2).items.tolist()
        assert set(top) == {0, 3}, (key, top)
    hybrid = create_retriever("hybrid").fit(ds, split)
    assert hybrid.search("space cadets", k=1).items.tolist() == [4]


def test_loading_a_retriever_imports_only_its_module(fitted, tmp_path):
    """Fast start: a saved recommender's retrievers load without importing every retriever module."""
    import subprocess
    import sys
    from pathlib import Path

    folder = fitted("popularity").save(tmp_path / "pop")
    code = ("import sys; from instructrec.candidates.base import load_retriever; "
            f"load_retriever({str(folder)!r}); "
            "print(sorted(m for m in ('bpr', 'sasrec', 'gru4rec', 'bert4rec', 'embedding', 'hybrid') "
            "if 'instructrec.candidates.' + m in sys.modules))")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": src})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
