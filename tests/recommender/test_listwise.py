"""The listwise head end to end on the toy catalogue: letter-labelled training data, the listwise
loss, the head recorded with the model, one reranking path with permutation averaging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instructrec.data.split import leave_one_out
from instructrec.errors import InstructRecError
from instructrec.eval.methods import parse_method
from instructrec.instructions.schema import Aspects
from instructrec.model.backend import load_model
from instructrec.model.listwise import ListwiseScorer, make_scorer
from instructrec.model.scoring import CandidateScorer
from instructrec.recommender.reranker import LLMScores, Query, Reranker, RerankSettings, candidate_orders
from instructrec.training.data import load_instruction_records

ASPECTS = Aspects.parse("P0,I2,T3")


@pytest.fixture(scope="module")
def listwise(toy_listwise):
    folder, instructions = toy_listwise
    return load_model(str(folder), device="cpu"), instructions


def test_build_writes_letters_and_letter_answers(listwise):
    _, instructions = listwise
    recs = load_instruction_records(instructions / "train")["train"]
    assert recs and all(r["candidate_labels"] == "letters" for r in recs)
    for r in recs[:20]:
        assert r["target"] == "ABCD"[r["target_index"]]
        assert f"\n{r['target']}. {r['candidates'][r['target_index']]}" in r["instruction"]


def test_head_is_saved_and_selects_the_scorer(listwise, toy_listwise):
    loaded, _ = listwise
    meta = json.loads((toy_listwise[0] / "instructrec.json").read_text())
    assert meta["head"] == "listwise" and loaded.head == "listwise"
    assert isinstance(make_scorer(loaded), ListwiseScorer)
    assert isinstance(make_scorer(load_model(str(toy_listwise[0].parent / "base"), device="cpu")), CandidateScorer)


def test_listwise_loss_trains_the_letter_logits(listwise, toy_listwise):
    loaded, instructions = listwise
    recs = load_instruction_records(instructions / "train")["train"]
    scores = ListwiseScorer(loaded).score([r["instruction"] for r in recs], [r["candidates"] for r in recs])
    hr = np.mean([int(np.argmax(s)) == r["target_index"] for s, r in zip(scores, recs)])
    assert hr >= 0.8  # chance is 0.25 with 4 candidates: the letter logits were trained
    state = sorted(toy_listwise[0].glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    history = json.loads((state / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[0] > 1.2 and losses[-1] < 0.5  # from about ln 4 (uniform over 4 letters) down
    assert any("eval_hr@1" in e for e in history)  # validated with the listwise head


def _reranker(toy_dataset, loaded, permutations=1):
    return Reranker(toy_dataset, LLMScores(make_scorer(loaded)), settings=RerankSettings(permutations=permutations))


def test_reranker_renders_letters_and_scores_the_letters(toy_dataset, listwise):
    loaded, _ = listwise
    reranker = _reranker(toy_dataset, loaded)
    titles = [str(t) for t in toy_dataset.titles]
    racing = [i for i, t in enumerate(titles) if t.endswith("Racing")][:1]
    others = [i for i, t in enumerate(titles) if not t.endswith("Racing")][:3]
    cands = np.asarray([others[0], racing[0], others[1], others[2]])
    query = Query(np.zeros(0, dtype=np.int64), ASPECTS, intention="I want a racing game")
    out = reranker.score_batch([query], cands[None, :])[0]
    assert "\nB. " in reranker.last_instructions[0] and "Answer with the letter" in reranker.last_instructions[0]
    assert np.isclose(np.exp(out.columns["llm"]).sum(), 1.0)
    np.testing.assert_allclose(out.scores, out.columns["llm"])  # no fusion weight: the LLM's order


def test_batched_equals_one_at_a_time(toy_dataset, listwise):
    loaded, _ = listwise
    rng = np.random.default_rng(0)
    split = leave_one_out(toy_dataset)
    queries = [Query(split.history(r, "test"), Aspects.parse("P1,I0,T3"), user=r) for r in range(5)]
    cands = np.stack([rng.choice(toy_dataset.n_items, 4, replace=False) for _ in queries])
    batched = _reranker(toy_dataset, loaded).score_batch(queries, cands)
    for q, c, b in zip(queries, cands, batched):
        one = _reranker(toy_dataset, loaded).score_batch([q], c[None, :])[0]
        np.testing.assert_allclose(one.scores, b.scores, atol=1e-4)


def test_known_users_cached_history_scores_as_uncached(toy_dataset, listwise):
    """The server's path (`Recommender.use_prefix_cache`): a user's next request reuses the KV cache
    of the history part of the user's previous prompt and scores what an uncached scorer scores."""
    from instructrec.model.scoring import PrefixCache

    loaded, _ = listwise
    split = leave_one_out(toy_dataset)
    rng = np.random.default_rng(1)
    hist = split.history(0, "test")
    requests = ["I want a racing game", "something to play with friends", "a puzzle please"]
    queries = [Query(hist, Aspects.parse("P1,I2,T3"), user=0, intention=r) for r in requests]
    cands = np.stack([rng.choice(toy_dataset.n_items, 4, replace=False) for _ in queries])
    cache = PrefixCache(4)
    cached = Reranker(toy_dataset, LLMScores(ListwiseScorer(loaded, prefix_cache=cache)))
    for q, c in zip(queries, cands):
        want = _reranker(toy_dataset, loaded).score_batch([q], c[None, :])[0]
        got = cached.score_batch([q], c[None, :])[0]
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4, rtol=0)
    assert cache.tokens_reused > 0  # the later requests did take the history from the cache


def test_permutation_averaging_is_order_invariant(toy_dataset, listwise):
    loaded, _ = listwise
    query = Query(np.asarray([0, 1]), Aspects.parse("P1,I0,T3"))
    cands = np.asarray([3, 9, 12, 5])
    by_item = {}
    for perm in ([0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0]):
        out = _reranker(toy_dataset, loaded, permutations=4).score_batch([query], cands[perm][None, :])[0]
        by_item[tuple(perm)] = dict(zip(out.items.tolist(), out.scores.tolist()))
    first = by_item[(0, 1, 2, 3)]
    for other in by_item.values():
        assert other.keys() == first.keys()
        np.testing.assert_allclose([other[k] for k in first], list(first.values()), atol=1e-6)
    plain = _reranker(toy_dataset, loaded, permutations=1).score_batch([query], cands[None, :])[0]
    orders = candidate_orders(cands, 4)
    assert sorted(map(tuple, np.sort(orders, axis=1))) == [(0, 1, 2, 3)] * 4  # each a permutation
    assert {int(o[0]) for o in orders} == {0, 1, 2, 3}  # every candidate shown first once
    assert plain.scores.shape == (4,)


def test_permutations_setting_and_method_grammar():
    with pytest.raises(InstructRecError, match="permutations"):
        RerankSettings(permutations=0)
    assert parse_method("llm:tuned*3+sasrec").permutations == 3
    assert parse_method("llm*2").llm == "" and parse_method("llm*2").permutations == 2
    assert parse_method("llm:tuned").permutations == 1
    with pytest.raises(InstructRecError, match=r"\*P"):
        parse_method("llm:tuned*x")


# -- collaborative notes: a first stage's ranks written next to the candidates ------------------
def _build_with(toy_dataset, out, max_examples=12, **first_stage):
    """Letter-labelled P1,I0,T3 instructions built with `first_stage` (`notes=` / `order=`); returns
    their train records, and asserts the first-stage input changes the build's fingerprint."""
    from instructrec.instructions.builder import BuildSettings, build_instructions, fingerprint
    from instructrec.instructions.render import RenderSettings
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates

    library = load_templates().select(["pref-rerank-history"])  # the template the reranker picks for P1,I0,T3
    teacher = ExtractiveTeacher().fit(toy_dataset)
    render = RenderSettings(n_candidates=4, candidate_labels="letters")
    settings = BuildSettings(max_examples=max_examples, render=render, **first_stage)
    build_instructions(toy_dataset, library, teacher, None, "train", 0, out, settings)
    assert fingerprint(toy_dataset, library, teacher, None, "train", 0, settings) != fingerprint(
        toy_dataset, library, teacher, None, "train", 0, BuildSettings(max_examples=max_examples, render=render))
    return load_instruction_records(out)["train"]


def test_notes_are_the_first_stage_ranks_and_the_same_in_training_and_serving(toy_dataset, toy_parts, tmp_path):
    import re

    from instructrec.instructions.notes import CandidateNotes

    _, _, _, pop, _ = toy_parts
    notes = CandidateNotes(pop, "popularity-test")
    cands = np.asarray([[3, 9, 12, 5]])
    ranks = notes.ranks([np.asarray([0, 1])], cands)[0]
    counts = pop.score([np.asarray([0, 1])], cands, None)[0]
    assert sorted(ranks.tolist()) == [1, 2, 3, 4] and ranks[int(np.argmax(counts))] == 1

    recs = _build_with(toy_dataset, tmp_path / "b", notes=notes)
    titles = [str(t) for t in toy_dataset.titles]
    index = {t: i for i, t in enumerate(titles)}
    reranker = Reranker(toy_dataset, LLMScores(_Letters()), [(pop, "note")],
                        settings=RerankSettings(history_items=20))
    for rec in recs[:6]:
        written = re.findall(r"\n[A-D]\. .*? \(collaborative rank (\d)\)", rec["instruction"])
        assert len(written) == 4
        hist = np.asarray([toy_dataset.item_index(i) for i in rec["meta"]["history"]])
        items = np.asarray([[index[t] for t in rec["candidates"]]])
        query = Query(hist, Aspects.parse(rec["aspects"]))
        served = reranker.score_batch([query], items)
        assert reranker.last_instructions[0] == rec["instruction"]  # train == serve, notes included
        assert np.allclose(served[0].columns["retrieval"], 0)  # a note retriever is not fused


class _Letters:
    """A stand-in listwise scorer that only records what it is asked (no model needed)."""

    candidate_labels = "letters"
    truncated = 0

    def score(self, instructions, candidates, normalize=None):
        return [np.zeros(len(c)) for c in candidates]


def test_note_role_in_methods():
    m = parse_method("llm:tuned+sasrec@note")
    assert m.fused == (("sasrec", "note"),) and not m.needs_fusion_weight
    assert parse_method("llm:tuned+sasrec@note+sasrec").needs_fusion_weight


class _FirstBest(_Letters):
    """Scores the first listed candidate highest (what a model tuned on ordered lists learns first)."""

    def score(self, instructions, candidates, normalize=None):
        return [-np.arange(len(c), dtype=float) for c in candidates]


def test_order_lists_the_first_stage_favourite_first_in_training_and_serving(toy_dataset, toy_parts, tmp_path):
    from instructrec.instructions.notes import CandidateNotes

    _, _, _, pop, _ = toy_parts
    recs = _build_with(toy_dataset, tmp_path / "o", order=CandidateNotes(pop, "popularity-test"))
    titles = [str(t) for t in toy_dataset.titles]
    index = {t: i for i, t in enumerate(titles)}
    reranker = Reranker(toy_dataset, LLMScores(_FirstBest()), [(pop, "order")], settings=RerankSettings(history_items=20))
    for rec in recs[:6]:
        hist = np.asarray([toy_dataset.item_index(i) for i in rec["meta"]["history"]])
        items = np.asarray([index[t] for t in rec["candidates"]])
        counts = pop.score([hist], items[None, :], None)[0]
        assert list(counts) == sorted(counts, reverse=True)  # listed by the first stage, favourite first
        assert rec["target"] == "ABCD"[rec["target_index"]] and rec["candidates"][rec["target_index"]] == titles[
            toy_dataset.item_index(rec["item_id"])]
        shuffled = items[::-1].copy()  # served in another order: listed as in training all the same
        served = reranker.score_batch([Query(hist, Aspects.parse(rec["aspects"]))], shuffled[None, :])
        assert reranker.last_instructions[0] == rec["instruction"]
        llm = dict(zip(served[0].items.tolist(), served[0].columns["llm"].tolist(), strict=True))
        assert llm[int(items[0])] == 0 and llm[int(items[1])] == -1  # scores go back to their items
        assert np.allclose(served[0].columns["retrieval"], 0)  # an order retriever is not fused
    with pytest.raises(InstructRecError, match="permutation averaging"):
        Reranker(toy_dataset, LLMScores(_FirstBest()), [(pop, "order")], settings=RerankSettings(permutations=2))
    m = parse_method("llm:tuned+sasrec@order")
    assert m.fused == (("sasrec", "order"),) and not m.needs_fusion_weight
    assert parse_method("llm:tuned+sasrec@order+sasrec").needs_fusion_weight


def test_a_model_tuned_with_the_first_stage_input_records_it_and_demands_it(toy_dataset, toy_parts, tmp_path):
    """The builder marks ordered records, training records `collaborative` in instructrec.json,
    and a reranker without the `order` role refuses the model instead of silently shuffling."""
    from instructrec.instructions.notes import CandidateNotes
    from instructrec.model.tiny import build_tiny_causal
    from instructrec.training.trainer import TrainSettings, train

    _, _, _, pop, _ = toy_parts
    recs = _build_with(toy_dataset, tmp_path / "data", max_examples=16, order=CandidateNotes(pop, "pop"))
    assert all(r["collaborative"] == ["order"] for r in recs)
    corpus = [str(t) for t in toy_dataset.titles] + [r["instruction"] for r in recs]
    base = build_tiny_causal(tmp_path / "tiny", corpus, vocab_size=600, hidden=64, seed=0)
    train(str(base), tmp_path / "data", TrainSettings(out_dir=str(tmp_path / "out"), lora=False,
                                                                max_steps=2, batch_size=4, logging_steps=1))
    assert json.loads((tmp_path / "out" / "instructrec.json").read_text())["collaborative"] == ["order"]
    loaded = load_model(str(tmp_path / "out"), device="cpu")
    assert loaded.collaborative == ("order",) and loaded.head == "listwise"
    scores = LLMScores(make_scorer(loaded))
    with pytest.raises(InstructRecError, match=r"\+RETRIEVER@order"):
        Reranker(toy_dataset, scores, [(pop, "history")])
    Reranker(toy_dataset, scores, [(pop, "order")])  # given the order it was tuned with: fine


def test_heldout_first_stage_orders_training_lists_by_ranks_it_has_not_fitted(toy_dataset, tmp_path):
    """`targets: last` builds one training instruction per evaluated user, its target the user's
    last training item and its history the items before it; a first stage fitted on
    `withhold_last(split, 1)` has not counted those targets, so its order of the training lists is
    as uninformed of the answer as at test time (a stage fitted on everything has seen them)."""
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import withhold_last
    from instructrec.instructions.notes import CandidateNotes

    split = leave_one_out(toy_dataset)
    full = create_retriever("popularity").fit(toy_dataset, split)
    held = create_retriever("popularity").fit(toy_dataset, withhold_last(split, 1))
    lasts = np.bincount([int(t[-1]) for t in split.train if len(t)], minlength=toy_dataset.n_items)
    np.testing.assert_array_equal(full.counts - held.counts, lasts)  # exactly the withheld targets uncounted
    assert withhold_last(split, 0) is split

    recs = _build_with(toy_dataset, tmp_path / "last", max_examples=None, order=CandidateNotes(held, "pop-held"),
                       targets="last")
    rows = {str(toy_dataset.user_ids[int(u)]): r for r, u in enumerate(split.users)}
    eligible = [u for u, t in zip(split.users, split.train, strict=True) if len(t) >= 2]
    assert len(recs) == len(eligible)
    ids = [str(i) for i in toy_dataset.item_ids]
    for rec in recs:
        train = split.train[rows[rec["user_id"]]]
        assert rec["item_id"] == ids[int(train[-1])]
        assert rec["meta"]["history"] == [ids[int(i)] for i in train[:-1][-20:]]
        listed = [held.counts[ids.index(i)] for i in rec["candidate_items"]]
        assert listed == sorted(listed, reverse=True)  # in the held-out stage's order
