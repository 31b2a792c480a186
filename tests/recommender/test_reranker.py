"""The one reranking path: contract tests every scorer passes, fusion, and served == evaluated."""

from __future__ import annotations

import numpy as np
import pytest

from instructrec.candidates.base import create_retriever
from instructrec.data.split import leave_one_out
from instructrec.errors import InstructRecError
from instructrec.eval.methods import EvalContext, ModelStore, build_scorer, parse_method
from instructrec.eval.protocol import get_task
from instructrec.eval.runner import RetrieverStore
from instructrec.instructions.schema import Aspects
from instructrec.itemlist import ItemList
from instructrec.model.backend import load_model
from instructrec.model.scoring import CandidateScorer
from instructrec.recommender import Recommender, RecommenderSettings
from instructrec.recommender.reranker import (
    LLMScores,
    Query,
    Reranker,
    RerankerScorer,
    RerankSettings,
    fit_fusion,
    fit_stack_weights,
    fuse,
    stack,
    standardize,
)


@pytest.fixture(scope="module")
def parts(toy_parts):
    dataset, base, adapter, pop, bm25 = toy_parts
    split = leave_one_out(dataset)
    store = RetrieverStore(dataset, split, None)
    store.preload("popularity", pop)
    store.preload("bm25", bm25)
    store.preload("sasrec", create_retriever("sasrec", epochs=1, hidden=16, max_len=8, seed=0).fit(dataset, split))
    models = ModelStore(str(adapter))
    ctx = EvalContext(dataset, split, store, models)
    return dataset, split, ctx, adapter


@pytest.fixture(scope="module")
def recommender(parts):
    dataset, split, ctx, adapter = parts
    return Recommender(dataset, load_model(str(adapter), device="cpu"), ctx.retrievers("sasrec"),
                       ctx.retrievers("bm25"), RecommenderSettings(n_candidates=8, fusion={"P1,I2,T3": 0.6}))


def _batch(dataset, split, n=6, size=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    hists = [split.history(int(r), "test") for r in rows]
    cands = np.stack([rng.choice(dataset.n_items, size, replace=False) for _ in rows])
    return rows, hists, cands, ["I want a Puzzle game"] * n


METHODS = ("popularity", "sasrec", "bm25", "llm", "llm+sasrec", "llm+sasrec+bm25@text", "stack:llm+sasrec+bm25@text",
           "stack:sasrec+popularity", "recommender")


def _weight(spec):
    """A fitted-looking fusion for a method: the mix's 0.5, or one stacker weight per signal."""
    if spec.stacked:
        return [0.5 + 0.25 * k for k in range((spec.llm is not None) + len(spec.fused))]
    return 0.5 if spec.needs_fusion_weight else None


@pytest.mark.parametrize("method", METHODS)
def test_scorer_contract(parts, recommender, method):
    """Every scorer: one finite score per candidate, deterministic, unknown items refused."""
    dataset, split, ctx, _ = parts
    ctx.recommender = recommender
    spec = parse_method(method)
    task = get_task("psearch-i2")
    scorer = build_scorer(spec, ctx, task, _weight(spec))
    rows, hists, cands, texts = _batch(dataset, split)
    a = np.asarray(scorer.score(rows, hists, cands, texts))
    assert a.shape == cands.shape and np.isfinite(a).all()
    b = np.asarray(scorer.score(rows, hists, cands, texts))
    np.testing.assert_allclose(a, b)
    bad = cands.copy()
    bad[0, 0] = dataset.n_items + 3
    with pytest.raises(InstructRecError, match="item"):
        scorer.score(rows, hists, bad, texts)


def test_fused_method_needs_a_weight_and_mixes_z_scores(parts):
    dataset, split, ctx, _ = parts
    task = get_task("seqrec")
    spec = parse_method("llm+sasrec")
    with pytest.raises(InstructRecError, match="fit its weight"):
        build_scorer(spec, ctx, task)
    rows, hists, cands, _ = _batch(dataset, split)
    llm = build_scorer(parse_method("llm"), ctx, task).score(rows, hists, cands, None)
    ret = build_scorer(parse_method("sasrec"), ctx, task).score(rows, hists, cands, None)
    for w in (0.0, 0.3, 1.0):
        fused = build_scorer(spec, ctx, task, w).score(rows, hists, cands, None)
        np.testing.assert_allclose(fused, w * standardize(llm) + (1 - w) * standardize(ret), atol=1e-9)
    np.testing.assert_allclose(fuse(llm, ret, 1.0), standardize(llm))


def test_fit_fusion_picks_the_signal_that_ranks_targets(parts):
    dataset, split, ctx, _ = parts
    rows, hists, cands, _ = _batch(dataset, split, n=12)
    target_pos = np.zeros(len(rows), dtype=np.int64)

    class Oracle:  # ranks column 0 first: fusion must put all weight on it
        uses_query = False

        def score(self, histories, candidates, queries=None, users=None):
            out = np.zeros(candidates.shape)
            out[:, 0] = 1.0
            return out

    reranker = Reranker(dataset, ctx.models(""), [(Oracle(), "history")], ctx.renderer)
    queries = [Query(h, Aspects.parse("P1,I0,T3")) for h in hists]
    assert fit_fusion(reranker, queries, cands, target_pos) == 0.0  # weight 0 on the LLM = the oracle alone


def test_a_stacker_weighs_each_signal_on_its_own(parts):
    """stack:llm+sasrec+popularity = w0 z(llm) + w1 z(sasrec) + w2 z(popularity), each signal
    scored alone; the z-score mix would weigh sasrec and popularity equally."""
    dataset, split, ctx, _ = parts
    task = get_task("seqrec")
    rows, hists, cands, _ = _batch(dataset, split)
    alone = [build_scorer(parse_method(m), ctx, task).score(rows, hists, cands, None)
             for m in ("llm", "sasrec", "popularity")]
    weights = [0.7, -0.2, 1.3]
    spec = parse_method("stack:llm+sasrec+popularity")
    assert spec.stacked and spec.needs_fusion_weight and spec.retrievers == ["sasrec", "popularity"]
    stacked = build_scorer(spec, ctx, task, weights).score(rows, hists, cands, None)
    expected = sum(w * standardize(np.asarray(a)) for w, a in zip(weights, alone, strict=True))
    np.testing.assert_allclose(stacked, expected, atol=1e-9)
    np.testing.assert_allclose(stack(alone, weights), expected, atol=1e-9)
    without_llm = build_scorer(parse_method("stack:sasrec+popularity"), ctx, task, weights[1:])
    np.testing.assert_allclose(without_llm.score(rows, hists, cands, None), expected - 0.7 * standardize(alone[0]),
                               atol=1e-9)
    with pytest.raises(InstructRecError, match="2 weights for 3 signals"):
        build_scorer(spec, ctx, task, [1.0, 1.0]).score(rows, hists, cands, None)


def test_fit_stack_weights_is_the_likelihood_optimum():
    """An informative signal gets a large weight and noise almost none, and the fitted weights
    maximise the targets' softmax likelihood (no other weights do better)."""
    rng = np.random.default_rng(0)
    n, c = 400, 10
    target_pos = rng.integers(0, c, n)
    useful = rng.normal(size=(n, c))
    useful[np.arange(n), target_pos] += 1.5
    noise = rng.normal(size=(n, c))
    w = np.asarray(fit_stack_weights([useful, noise], target_pos))
    assert w[0] > 1.0 and 0 <= w[1] < 0.2 * w[0]
    # a signal that points away from the target is ignored, not inverted (non-negative weights)
    assert fit_stack_weights([useful, -useful], target_pos)[1] == 0.0

    def nll(weights):
        s = weights[0] * standardize(useful) + weights[1] * standardize(noise)
        s = s - s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[np.arange(n), target_pos]).mean())

    best = nll(w)
    for step in ([0.1, 0], [-0.1, 0], [0, 0.1], [0, -0.1]):
        if (w + np.asarray(step) >= 0).all():  # every feasible move away from the fit does worse
            assert nll(w + np.asarray(step)) > best
    with pytest.raises(InstructRecError, match="validation users"):
        fit_stack_weights([useful[:0], noise[:0]], target_pos[:0])
    # rows without their target (two-stage candidates, -1) are left out of the fit, not read as column -1
    missing = np.r_[target_pos, np.full(50, -1)]
    padded = [np.r_[useful, rng.normal(size=(50, c))], np.r_[noise, rng.normal(size=(50, c))]]
    np.testing.assert_allclose(fit_stack_weights(padded, missing), w)


def test_fit_fusion_stacked_trusts_the_signal_that_ranks_targets(parts):
    dataset, split, ctx, _ = parts
    rows, hists, cands, _ = _batch(dataset, split, n=12)
    target_pos = np.zeros(len(rows), dtype=np.int64)

    class Oracle:  # ranks column 0 (the target) first
        uses_query = False
        name = "oracle"

        def score(self, histories, candidates, queries=None, users=None):
            out = np.zeros(candidates.shape)
            out[:, 0] = 1.0
            return out

    reranker = Reranker(dataset, ctx.models(""), [(Oracle(), "history")], ctx.renderer)
    assert reranker.signal_names == ["llm", "oracle@history"]
    queries = [Query(h, Aspects.parse("P1,I0,T3")) for h in hists]
    w_llm, w_oracle = fit_fusion(reranker, queries, cands, target_pos, stacked=True)
    assert w_oracle > 5 * abs(w_llm)
    alone = Reranker(dataset, None, [(Oracle(), "history")], ctx.renderer)
    with pytest.raises(InstructRecError, match="at least two signals"):
        fit_fusion(alone, queries, cands, target_pos, stacked=True)


@pytest.mark.parametrize(("text", "message"), [
    ("stack:sasrec", "at least two signals"),
    ("stack:llm", "at least two signals"),
    ("stack:llm:tuned+sasrec@order", "at least two signals"),
    ("stack:recommender", "stack:"),
    ("stack:stack:llm+sasrec", "stack:"),
    ("stack:llm+sasrec@nowhere", "cannot read"),
])
def test_stack_grammar_refuses_what_it_cannot_weigh(text, message):
    with pytest.raises(InstructRecError, match=message):
        parse_method(text)


def test_pmi_scores_are_the_difference_of_two_naive_likelihoods(parts):
    """llm~pmi: each title's log-likelihood given the instruction minus given the same instruction
    with a content-free history, each computed naively (one full forward per candidate)."""
    from instructrec.model.scoring import naive_scores

    dataset, split, ctx, adapter = parts
    task = get_task("seqrec")
    rows, hists, cands, _ = _batch(dataset, split, n=3)
    scorer = build_scorer(parse_method("llm~pmi"), ctx, task)
    calibrated = scorer.score(rows, hists, cands, None)
    plain = build_scorer(parse_method("llm"), ctx, task).score(rows, hists, cands, None)
    model = load_model(str(adapter), device="cpu")
    reranker = scorer.reranker
    assert reranker.settings.calibration == "pmi"
    for i, query in enumerate(scorer.queries(rows, hists, None)):
        titles = [str(dataset.titles[int(j)]) for j in cands[i]]
        with_history = naive_scores(model, reranker.instruction(query, cands[i]).text, titles)
        bare = reranker.instruction(query, cands[i], content_free=True).text
        assert "oldest first: N/A." in bare and bare != reranker.instruction(query, cands[i]).text
        np.testing.assert_allclose(calibrated[i], with_history - naive_scores(model, bare, titles), atol=1e-4)
        np.testing.assert_allclose(plain[i], with_history, atol=1e-4)
    with pytest.raises(InstructRecError, match="calibration"):
        parse_method("llm~nope")
    with pytest.raises(InstructRecError, match="calibration"):
        RerankSettings(calibration="nope")  # type: ignore[arg-type]


def test_llm_memo_is_bounded_and_exact(parts):
    dataset, _, _, adapter = parts
    scorer = CandidateScorer(load_model(str(adapter), device="cpu"))
    memo = LLMScores(scorer, memo_size=2)
    texts = ["I like puzzle games. Pick one: 1. A 2. B", "I like racing. Pick one: 1. A 2. B", "x y z"]
    first = memo(texts, [["Block Drop Puzzle", "Turbo Kart Racing"]] * 3)
    assert len(memo._memo) == 2
    hit = memo(texts[2:], [["Block Drop Puzzle", "Turbo Kart Racing"]])  # still memoised: the stored scores
    np.testing.assert_array_equal(hit[0], first[2])
    again = memo(texts[:1], [["Block Drop Puzzle", "Turbo Kart Racing"]])  # evicted: scored again, alone
    # a batch of one and a batch of three differ in the last fp32 bit (1.2e-7 seen in CI), not more
    np.testing.assert_allclose(first[0], again[0], rtol=1e-5, atol=1e-6)
    direct = scorer.score(texts[:1], [["Block Drop Puzzle", "Turbo Kart Racing"]])[0]
    np.testing.assert_allclose(first[0], direct, rtol=1e-5, atol=1e-6)


def test_served_ranking_equals_evaluated_ranking(parts, recommender):
    """Recommender.recommend (one user) and the evaluation harness (a batch) rank alike."""
    dataset, split, _, _ = parts
    row = 3
    hist = split.history(row, "test")
    request = "I want a Puzzle game"
    cands = np.asarray([i for i in range(dataset.n_items) if i not in set(hist.tolist())][:7])
    served = recommender.recommend(history=[str(dataset.item_ids[i]) for i in hist], request=request,
                                   candidates=[str(dataset.item_ids[i]) for i in cands], k=len(cands))
    assert served.aspects == "P1,I2,T3" and served.request_kind == "specific_intention"
    scorer = RerankerScorer(recommender.reranker, "P1,I2,T3", split.users, "rec")
    scores = scorer.score(np.array([row]), [hist], cands[None], [request])[0]
    # the evaluated query is the task's; the served one is routed from the request: same text
    evaluated = [str(dataset.item_ids[i]) for i in cands[np.argsort(-scores, kind="stable")]]
    assert [it.item_id for it in served.items] == evaluated
    np.testing.assert_allclose(sorted(it.score for it in served.items), sorted(scores), atol=1e-9)
    assert all(it.llm_score is not None and it.retrieval_score is not None for it in served.items)


def test_request_without_fitted_weight_says_llm_alone(recommender, toy_dataset):
    result = recommender.recommend(user_id=str(toy_dataset.user_ids[0]), k=3)  # P1,I0,T3: no weight fitted
    assert any("no fusion weight" in n for n in result.notes)
    with_weight = recommender.recommend(user_id=str(toy_dataset.user_ids[0]), request="I want a Puzzle game", k=3)
    assert not any("no fusion weight" in n for n in with_weight.notes)


def test_cold_start_ranks_by_first_stage(recommender):
    result = recommender.recommend(k=4)
    assert result.instruction == "" and any("cold start" in n for n in result.notes)
    assert all(it.llm_score is None for it in result.items)


def test_itemlist_columns_follow_ranking():
    items = ItemList(np.array([5, 6, 7]), np.array([0.1, 0.9, np.nan]), ["a", "b", "c"],
                     {"llm": np.array([1.0, 2.0, 3.0])})
    ranked = items.ranked()
    assert ranked.items.tolist() == [6, 5, 7] and ranked.titles == ["b", "a", "c"]
    assert ranked.columns["llm"].tolist() == [2.0, 1.0, 3.0]
    assert ItemList.of([1, 2]).ranked(1).items.tolist() == [1]
    with pytest.raises(ValueError, match="column"):
        ItemList(np.array([1]), np.array([0.0]), columns={"x": np.array([1.0, 2.0])})


def test_reranker_settings_round_trip(parts):
    dataset, _, ctx, _ = parts
    reranker = Reranker(dataset, None, [(ctx.retrievers("popularity"), "history")], ctx.renderer, RerankSettings())
    out = reranker.rerank(Query(np.array([0, 1]), Aspects.parse("P1,I0,T3")), ItemList.of([3, 4, 5]))
    assert len(out) == 3 and np.isnan(out.columns["llm"]).all()  # no LLM: the first stage ranks
    assert reranker.with_fusion({"P1,I0,T3": 0.2}).settings.fusion == {"P1,I0,T3": 0.2}


def test_a_saved_retriever_removes_the_checkpoint_a_killed_run_left(parts, tmp_path):
    """Killed between saving a fitted SASRec and removing its training checkpoint, a rerun loads
    the saved model and removes the spent checkpoint (nothing left over after the resume)."""
    dataset, split, _, _ = parts
    params = {"sasrec": {"epochs": 1, "hidden": 16, "max_len": 8, "seed": 0}}
    RetrieverStore(dataset, split, tmp_path, params)("sasrec")
    assert (tmp_path / "sasrec" / "settings.json").exists() and not (tmp_path / ".sasrec.checkpoint.pt").exists()
    (tmp_path / ".sasrec.checkpoint.pt").write_bytes(b"left by a killed run")
    RetrieverStore(dataset, split, tmp_path, params)("sasrec")
    assert not (tmp_path / ".sasrec.checkpoint.pt").exists()
