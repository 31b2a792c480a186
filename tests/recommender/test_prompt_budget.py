"""The prompt budget (history items and characters, title characters) a model is tuned with is
recorded with it, and its reranker cuts served prompts the same way: train == serve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instructrec.errors import DataError
from instructrec.instructions.schema import Aspects
from instructrec.model.backend import load_model
from instructrec.model.listwise import make_scorer
from instructrec.recommender.reranker import LLMScores, Query, Reranker, RerankSettings
from instructrec.training.data import load_instruction_records, records_render


def _build(toy_dataset, out, render):
    from instructrec.instructions.builder import BuildSettings, build_instructions
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates

    library = load_templates().select(["pref-rerank-history"])  # the template the reranker picks for P1,I0,T3
    build_instructions(toy_dataset, library, ExtractiveTeacher().fit(toy_dataset), None, "train", 0, out,
                       BuildSettings(max_examples=12, render=render))
    return load_instruction_records(out)["train"]


def test_a_tuned_model_records_its_prompt_budget_and_is_served_with_it(toy_dataset, tmp_path):
    from instructrec.instructions.render import RenderSettings
    from instructrec.model.tiny import build_tiny_causal
    from instructrec.training.trainer import TrainSettings, train

    render = RenderSettings(n_candidates=4, history_items=1, title_chars=9)
    recs = _build(toy_dataset, tmp_path / "data", render)
    assert all(r["render"] == render.budget() for r in recs)
    assert all("\u2026" in r["instruction"] for r in recs)  # toy titles (12-17 characters) cut to 9
    corpus = [str(t) for t in toy_dataset.titles] + [r["instruction"] for r in recs]
    base = build_tiny_causal(tmp_path / "tiny", corpus, vocab_size=600, hidden=64, seed=0)
    train(str(base), tmp_path / "data", TrainSettings(out_dir=str(tmp_path / "out"), lora=False, max_steps=2,
                                                      batch_size=4, logging_steps=1))
    assert json.loads((tmp_path / "out" / "instructrec.json").read_text())["render"] == render.budget()
    loaded = load_model(str(tmp_path / "out"), device="cpu")
    assert loaded.render == render.budget()

    reranker = Reranker(toy_dataset, LLMScores(make_scorer(loaded)), settings=RerankSettings(history_items=20))
    assert reranker.settings.history_items == 1 and reranker.renderer.settings.title_chars == 9
    index = {str(t): i for i, t in enumerate(toy_dataset.titles)}
    assert all(len(r["meta"]["history"]) == 1 for r in recs)  # the toy's training targets follow 1-2 items
    for rec in recs[:4]:
        shown = [toy_dataset.item_index(i) for i in rec["meta"]["history"]]
        older = [i for i in range(toy_dataset.n_items) if i not in shown][:3]  # served with a longer history
        items = np.asarray([[index[t] for t in _full_titles(toy_dataset, rec)]])
        reranker.score_batch([Query(np.asarray(older + shown), Aspects.parse(rec["aspects"]))], items)
        assert reranker.last_instructions[0] == rec["instruction"]  # cut like the training prompt
    untuned = Reranker(toy_dataset, LLMScores(make_scorer(load_model(str(base), device="cpu"))))
    assert untuned.renderer.settings.title_chars == 160 and untuned.settings.history_items == 20


def _full_titles(dataset, rec):
    """The record's candidates by their full titles (the record shows them cut)."""
    by_item = {str(dataset.item_ids[i]): str(dataset.titles[i]) for i in range(dataset.n_items)}
    return [by_item[item] for item in rec["candidate_items"]]


def test_default_budget_is_not_written_and_mixed_budgets_are_refused(toy_dataset, tmp_path):
    from instructrec.instructions.render import RenderSettings

    plain = _build(toy_dataset, tmp_path / "plain", RenderSettings(n_candidates=4))
    assert all("render" not in r for r in plain) and records_render(plain) == {}
    short = _build(toy_dataset, tmp_path / "short", RenderSettings(n_candidates=4, history_items=3))
    assert records_render(short)["history_items"] == 3
    with pytest.raises(DataError, match="different prompt budgets"):
        records_render(plain + short)
