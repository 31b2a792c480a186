"""The first-stage prior (issue 15, lever 2 as a residual): training lists record each candidate's
z-scored first-stage score, the softmax objective ranks title score + weight x prior, the fitted
weight is saved with the model, and the reranker adds the same prior when serving (`@prior`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from instructrec.errors import DataError, InstructRecError
from instructrec.eval.methods import parse_method
from instructrec.instructions.notes import CandidateNotes
from instructrec.instructions.schema import Aspects
from instructrec.model.backend import load_model
from instructrec.model.prompt import PromptEncoder
from instructrec.model.scoring import naive_scores
from instructrec.recommender.reranker import LLMScores, Query, Reranker, RerankSettings, standardize
from instructrec.training.collate import InstructionCollator
from instructrec.training.data import fit_prior_weight, load_instruction_records, tokenize_records
from instructrec.training.loss import candidates_softmax_loss


def _build(toy_dataset, out, prior, max_examples=16):
    """Numbered P1,I0,T3 lists of 4 built with `prior`; their train records (the prior changes the
    build's fingerprint)."""
    from instructrec.instructions.builder import BuildSettings, build_instructions, fingerprint
    from instructrec.instructions.render import RenderSettings
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates

    library = load_templates().select(["pref-rerank-history"])
    teacher = ExtractiveTeacher().fit(toy_dataset)
    render = RenderSettings(n_candidates=4)
    settings = BuildSettings(max_examples=max_examples, render=render, prior=prior)
    build_instructions(toy_dataset, library, teacher, None, "train", 0, out, settings)
    assert fingerprint(toy_dataset, library, teacher, None, "train", 0, settings) != fingerprint(
        toy_dataset, library, teacher, None, "train", 0, BuildSettings(max_examples=max_examples, render=render))
    return load_instruction_records(out)["train"]


def _items(toy_dataset, rec):
    index = {str(t): i for i, t in enumerate(toy_dataset.titles)}
    hist = np.asarray([toy_dataset.item_index(i) for i in rec["meta"]["history"]])
    return hist, np.asarray([index[t] for t in rec["candidates"]])


def test_records_carry_the_first_stage_zscores_of_their_listed_candidates(toy_dataset, toy_parts, tmp_path):
    pop = toy_parts[3]
    recs = _build(toy_dataset, tmp_path / "b", CandidateNotes(pop, "pop"))
    assert recs and all(r["collaborative"] == ["prior"] for r in recs)
    for rec in recs[:8]:
        hist, items = _items(toy_dataset, rec)
        expected = standardize(pop.score([hist], items[None, :], None))[0]
        np.testing.assert_allclose(rec["meta"]["prior"], expected, atol=1e-5)


def test_fitted_weight_recovers_the_prior_temperature():
    rng = np.random.default_rng(0)
    records = []
    for _ in range(3000):
        z = standardize(rng.normal(size=(1, 10)))[0]
        p = np.exp(1.5 * z) / np.exp(1.5 * z).sum()
        records.append({"meta": {"prior": z.tolist()}, "target_index": int(rng.choice(10, p=p))})
    assert fit_prior_weight(records) == pytest.approx(1.5, abs=0.15)
    assert fit_prior_weight([{"meta": {}, "target_index": 0}]) == 0.0  # no prior: nothing to weigh


def test_loss_ranks_title_scores_plus_the_weighted_prior(tiny_llama_dir, tiny_instructions_dir):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    records = [dict(r) for r in load_instruction_records(tiny_instructions_dir)["train"][:3]]
    rng = np.random.default_rng(1)
    for rec in records:
        rec["meta"] = {**rec.get("meta", {}), "prior": standardize(rng.normal(size=(1, len(rec["candidates"]))))[0].tolist()}
    feats = tokenize_records(records, PromptEncoder(loaded.tokenizer, loaded.kind), "softmax")
    batch = InstructionCollator(loaded.tokenizer.pad_token_id, loaded.kind)(feats)
    loss = candidates_softmax_loss(loaded.model, batch, loaded.tokenizer.pad_token_id, "mean", 1.0, prior_weight=2.0)
    expected = []
    for rec in records:
        s = naive_scores(loaded, rec["instruction"], rec["candidates"], "mean") + 2.0 * np.asarray(rec["meta"]["prior"])
        expected.append(np.log(np.exp(s - s.max()).sum()) + s.max() - s[rec["target_index"]])
    assert float(loss) == pytest.approx(float(np.mean(expected)), abs=1e-4)
    plain = candidates_softmax_loss(loaded.model, batch, loaded.tokenizer.pad_token_id, "mean", 1.0)
    assert abs(float(plain) - float(loss)) > 1e-3  # the prior changes the loss


class _FirstBest:
    """Scores the first listed candidate highest; `loaded` says it was tuned on a prior."""

    candidate_labels = "numbers"
    truncated = 0
    loaded = SimpleNamespace(name="fake", prior_weight=2.0, collaborative=("prior",), render={}, tuned=False)

    def score(self, instructions, candidates, normalize=None):
        return [-np.arange(len(c), dtype=float) for c in candidates]


def test_reranker_adds_the_weighted_prior_and_demands_it(toy_dataset, toy_parts):
    pop = toy_parts[3]
    with pytest.raises(InstructRecError, match=r"\+RETRIEVER@prior"):
        Reranker(toy_dataset, LLMScores(_FirstBest()), [(pop, "history")])
    reranker = Reranker(toy_dataset, LLMScores(_FirstBest()), [(pop, "prior")], settings=RerankSettings(history_items=20))
    hist, items = np.asarray([0, 1, 2]), np.asarray([[3, 9, 12, 5]])
    served = reranker.score_batch([Query(hist, Aspects.parse("P1,I0,T3"))], items)[0]
    expected = -np.arange(4.0) + 2.0 * standardize(pop.score([hist], items, None))[0]
    llm = dict(zip(served.items.tolist(), served.columns["llm"].tolist(), strict=True))
    np.testing.assert_allclose([llm[int(i)] for i in items[0]], expected, atol=1e-9)
    assert np.allclose(served.columns["retrieval"], 0)  # a prior retriever is not fused
    untuned = _FirstBest()
    untuned.loaded = SimpleNamespace(name="plain", prior_weight=0.0, collaborative=(), render={}, tuned=False)
    with pytest.raises(InstructRecError, match="drop `@prior`"):
        Reranker(toy_dataset, LLMScores(untuned), [(pop, "prior")])
    method = parse_method("llm:tuned+sasrec@prior")
    assert method.fused == (("sasrec", "prior"),) and not method.needs_fusion_weight


def test_training_fits_and_saves_the_weight(toy_dataset, toy_parts, tmp_path):
    from instructrec.model.tiny import build_tiny_causal
    from instructrec.training.trainer import TrainSettings, train

    pop = toy_parts[3]
    recs = _build(toy_dataset, tmp_path / "data", CandidateNotes(pop, "pop"), max_examples=24)
    corpus = [str(t) for t in toy_dataset.titles] + [r["instruction"] for r in recs]
    base = build_tiny_causal(tmp_path / "tiny", corpus, vocab_size=600, hidden=64, seed=0)
    with pytest.raises(DataError, match="objective `softmax`"):
        train(str(base), tmp_path / "data", TrainSettings(out_dir=str(tmp_path / "bad"), max_steps=1, batch_size=4))
    train(str(base), tmp_path / "data", TrainSettings(out_dir=str(tmp_path / "out"), lora=False, max_steps=2,
                                                      batch_size=4, logging_steps=1, objective="softmax"))
    meta = json.loads((tmp_path / "out" / "instructrec.json").read_text())
    assert meta["collaborative"] == ["prior"]
    assert meta["settings"]["prior_weight"] == fit_prior_weight(recs)
    loaded = load_model(str(tmp_path / "out"), device="cpu")
    assert loaded.prior_weight == fit_prior_weight(recs) and loaded.collaborative == ("prior",)

    from instructrec.recommender.recommender import Recommender, RecommenderSettings

    with pytest.raises(InstructRecError, match="prior settings"):  # a saved recommender says which setting
        Recommender(toy_dataset, loaded, pop, settings=RecommenderSettings(n_candidates=4))
    served = Recommender(toy_dataset, loaded, pop, settings=RecommenderSettings(n_candidates=4, prior=True))
    assert (pop, "prior") in served.reranker.retrievers and served.reranker.prior_weight == loaded.prior_weight
