"""Collaborative soft tokens (issue 15, lever 2; `model.item_tokens`): item markers encode to one id
each, those ids embed as projected first-stage vectors in every scoring path, the projector trains
with the adapter and survives save/load, and the renderer writes the markers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from instructrec.errors import DataError, InstructRecError, ModelError
from instructrec.instructions.render import Renderer, RenderSettings
from instructrec.model import item_tokens, load_model
from instructrec.model.item_markers import MARKER_RE, marker
from instructrec.model.prompt import PromptEncoder
from instructrec.model.scoring import CandidateScorer, naive_scores

TABLE = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)


@pytest.fixture
def tiny_with_items(tiny_llama_dir):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    torch.manual_seed(0)
    item_tokens.install(loaded.model, TABLE, hidden=16)
    return loaded


def test_markers_encode_to_one_id_past_the_vocabulary(tiny_llama_dir, tiny_with_items):
    enc = PromptEncoder.for_model(tiny_with_items)
    offset = enc.item_offset
    assert offset == tiny_with_items.model.get_input_embeddings().base.num_embeddings
    ids = enc.render(f"racing games {marker(3)} and more {marker(0)}")
    assert [i - offset for i in ids if i >= offset] == [3, 0]
    plain = PromptEncoder.for_model(load_model(tiny_llama_dir, device="cpu", dtype="float32"))
    assert plain.item_offset is None and all(i < offset for i in plain.render(f"racing {marker(3)}"))
    with pytest.raises(ModelError, match="has 6 items"):
        enc.render(f"racing {marker(6)}")


def test_item_ids_embed_as_projected_table_rows(tiny_with_items):
    emb = tiny_with_items.model.get_input_embeddings()
    ids = torch.tensor([[5, emb.offset + 2, 7, emb.offset + 5]])
    out = emb(ids)
    assert torch.allclose(out[0, 0], emb.base(torch.tensor(5)))
    assert torch.allclose(out[0, 1], emb.item_projector(emb.table[2]))
    assert torch.allclose(out[0, 3], emb.item_projector(emb.table[5]))
    assert not torch.allclose(out[0, 1], out[0, 3])


def test_batched_scores_equal_naive_scores_and_the_soft_token_matters(tiny_with_items):
    scorer = CandidateScorer(tiny_with_items)
    instructions = [f"I played alpha {marker(i)} and beta {marker((i + 1) % 6)}. Pick one:\n1. gamma {marker(i)}"
                    for i in range(4)]
    candidates = [["gamma", "delta epsilon"], ["zeta", "eta"], ["theta iota kappa", "lambda"], ["mu", "nu"]]
    batched = scorer.score(instructions, candidates)
    for text, cands, got in zip(instructions, candidates, batched, strict=True):
        assert np.allclose(got, naive_scores(tiny_with_items, text, cands), atol=1e-3)
    swapped = scorer.score([instructions[0].replace(marker(0), marker(4))], [candidates[0]])[0]
    assert not np.allclose(swapped, batched[0], atol=1e-5)  # another item's vector: another score


def test_renderer_writes_markers_after_history_and_candidate_titles(toy_dataset):
    plain = Renderer(toy_dataset).rerank("P1,I0,T3", history=[0, 1, 2], candidates=[5, 6, 7])
    marked = Renderer(toy_dataset, settings=RenderSettings(item_tokens=True)).rerank(
        "P1,I0,T3", history=[0, 1, 2], candidates=[5, 6, 7])
    for i in (0, 1, 2, 5, 6, 7):
        assert f"{toy_dataset.titles[i]} {marker(i)}" in marked.text
    assert re.sub(" " + MARKER_RE.pattern, "", marked.text) == plain.text  # the same prompt plus markers
    assert marked.candidates == plain.candidates  # answers stay plain titles
    budget = RenderSettings(history_items=2, item_tokens=True)
    short = Renderer(toy_dataset, settings=budget).rerank("P1,I0,T3", history=[0, 1, 2], candidates=[5])
    assert marker(0) not in short.text and marker(1) in short.text and marker(2) in short.text
    assert RenderSettings(item_tokens=True).budget()["item_tokens"] is True
    assert "item_tokens" not in RenderSettings().budget()  # older models keep their recorded budget


@pytest.fixture(scope="module")
def item_model(toy_dataset, toy_task, tmp_path_factory):
    """A tiny LoRA model tuned with item tokens on the toy task (instructions built with markers)."""
    from instructrec.training.trainer import TrainSettings, train

    root = tmp_path_factory.mktemp("items")
    base = toy_task(toy_dataset, root, RenderSettings(n_candidates=4, item_tokens=True), {"train": 32, "valid": 8})
    table = np.random.default_rng(1).normal(size=(toy_dataset.n_items, 8)).astype(np.float32)
    settings = TrainSettings(out_dir=str(root / "model"), lora=True, max_steps=4, batch_size=8, eval_steps=2,
                             max_eval_examples=8, logging_steps=1, learning_rate=1e-2, objective="softmax",
                             item_token_hidden=16, seed=0)
    train(str(base), root / "instr" / "train", settings, valid=root / "instr" / "valid", item_table=table)
    return root, base, table, settings


def test_projector_trains_and_round_trips_through_save_and_load(item_model, toy_dataset):
    from instructrec.training.data import load_instruction_records

    root, base, table, _ = item_model
    folder = root / "model"
    meta = json.loads((folder / "instructrec.json").read_text())
    assert meta["item_tokens"] == {"rows": toy_dataset.n_items, "dim": 8, "hidden": 16}
    assert meta["render"]["item_tokens"] is True
    assert (folder / item_tokens.ITEM_TOKENS_FILE).is_file()
    assert all((c / item_tokens.ITEM_TOKENS_FILE).is_file() for c in folder.glob("checkpoint-*"))
    loaded = load_model(str(folder), device="cpu", dtype="float32")
    merged = load_model(str(folder), device="cpu", dtype="float32", merge_adapter=True)
    lean = load_model(str(folder), device="cpu", dtype="float32", merge_adapter=True, lean=True)
    emb = item_tokens.find(loaded.model)
    assert emb is not None and emb.rows == toy_dataset.n_items
    # the projector moved away from its seeded initialisation: it trained with the adapter
    torch.manual_seed(0)
    fresh = load_model(str(base), device="cpu", dtype="float32")
    init = item_tokens.install(fresh.model, table, hidden=16)
    trained = dict(emb.item_projector.state_dict())
    assert any(not torch.allclose(v, init.item_projector.state_dict()[k]) for k, v in trained.items())
    recs = load_instruction_records(root / "instr" / "valid")["valid"][:4]
    assert all(marker(0)[:7] in r["instruction"] for r in recs)
    args = ([r["instruction"] for r in recs], [r["candidates"] for r in recs])
    reference = CandidateScorer(loaded).score(*args)
    for other in (merged, lean):
        assert item_tokens.find(other.model) is not None
        for a, b in zip(reference, CandidateScorer(other).score(*args), strict=True):
            assert np.allclose(a, b, atol=1e-3)


def test_served_instructions_carry_the_markers_and_the_catalogue_must_match(item_model, toy_dataset):
    from instructrec.data.dataset import Dataset
    from instructrec.model.listwise import make_scorer
    from instructrec.recommender.reranker import LLMScores, Reranker

    loaded = load_model(str(item_model[0] / "model"), device="cpu", dtype="float32")
    reranker = Reranker(toy_dataset, LLMScores(make_scorer(loaded)))
    assert reranker.renderer.settings.item_tokens
    items = toy_dataset.items.iloc[:-1].reset_index(drop=True)
    inter = toy_dataset.interactions[toy_dataset.interactions["item_id"].isin(items["item_id"])]
    smaller = Dataset.from_frames(items, inter, source="toy")
    with pytest.raises(InstructRecError, match="item tokens for"):
        Reranker(smaller, LLMScores(make_scorer(loaded)))


def test_item_tokens_need_markers_and_lora(item_model, toy_dataset, tmp_path):
    from dataclasses import replace

    from instructrec.training.trainer import train

    root, base, table, settings = item_model
    with pytest.raises(DataError, match="no item tokens"):  # marked instructions, no table
        train(str(base), root / "instr" / "train", replace(settings, out_dir=str(tmp_path / "a")))
    with pytest.raises(DataError, match="LoRA only"):
        train(str(base), root / "instr" / "train", replace(settings, out_dir=str(tmp_path / "b"), lora=False),
              item_table=table)
