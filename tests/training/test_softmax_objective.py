"""The `softmax` objective (issue 15): cross-entropy of the target over the candidates' title
log-likelihoods, computed by the title head's own scoring code, so training optimises the score
the reranker ranks with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instructrec.errors import DataError
from instructrec.model import load_model
from instructrec.model.prompt import PromptEncoder
from instructrec.model.scoring import CandidateScorer, naive_scores
from instructrec.training import TrainSettings, train
from instructrec.training.collate import InstructionCollator
from instructrec.training.data import (
    load_instruction_records,
    reranking_records,
    sampled_negatives,
    tokenize_records,
)
from instructrec.training.loss import answer_only_loss, candidates_softmax_loss


def tiny_records(folder, n: int, start: int) -> list[dict]:
    """`n` of the tiny training records (the session fixture's), from `start`, as fresh copies."""
    return [dict(r) for r in load_instruction_records(folder)["train"][start : start + n]]


def _batch(loaded, records, objective):
    enc = PromptEncoder(loaded.tokenizer, loaded.kind)
    feats = tokenize_records(records, enc, objective)
    return InstructionCollator(loaded.tokenizer.pad_token_id, loaded.kind)(feats)


@pytest.mark.parametrize(("normalize", "temperature"), [("mean", 1.0), ("sum", 0.5)])
def test_loss_is_cross_entropy_of_the_naive_scores(tiny_llama_dir, tiny_instructions_dir, normalize, temperature):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    records = tiny_records(tiny_instructions_dir, 3, 0)
    records[1]["candidates"] = records[1]["candidates"][:3]  # lists of different lengths
    records[1]["target_index"] = min(records[1]["target_index"], 2)
    batch = _batch(loaded, records, "softmax")
    loss = candidates_softmax_loss(loaded.model, batch, loaded.tokenizer.pad_token_id, normalize, temperature)
    expected = []
    for rec in records:
        s = naive_scores(loaded, rec["instruction"], rec["candidates"], normalize) / temperature
        expected.append(-(s[rec["target_index"]] - np.log(np.exp(s - s.max()).sum()) - s.max()))
    assert float(loss) == pytest.approx(float(np.mean(expected)), abs=1e-4)


def test_loss_has_gradients_and_rows_without_lists_add_nothing(tiny_llama_dir, tiny_instructions_dir):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    records = tiny_records(tiny_instructions_dir, 2, 3)
    plain = dict(records[1], candidates=[], target_index=-1)  # a record with no list: likelihood only
    batch = _batch(loaded, [records[0], plain], "likelihood+softmax")
    assert batch["target_index"].tolist() == [records[0]["target_index"], -1]
    loss = candidates_softmax_loss(loaded.model, batch, loaded.tokenizer.pad_token_id)
    alone = candidates_softmax_loss(loaded.model, _batch(loaded, [records[0]], "softmax"), loaded.tokenizer.pad_token_id)
    assert float(loss) == pytest.approx(float(alone), abs=1e-5)
    loss.backward()
    grads = [p.grad for p in loaded.model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_objective_decides_the_likelihood_term(tiny_llama_dir, tiny_t5_dir, tiny_instructions_dir):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    records = tiny_records(tiny_instructions_dir, 2, 5)
    only = _batch(loaded, records, "softmax")
    both = _batch(loaded, records, "likelihood+softmax")
    plain = _batch(loaded, records, "likelihood")
    assert (only["labels"] == -100).all() and (both["labels"] != -100).any()
    assert "candidate_ids" not in plain and torch.equal(both["labels"], plain["labels"])
    # a batch with no likelihood targets gives a zero likelihood term, not NaN
    assert float(answer_only_loss(loaded.model, "causal", only)) == 0.0
    t5 = load_model(tiny_t5_dir, device="cpu")
    with pytest.raises(DataError, match="causal models only"):
        tokenize_records(records, PromptEncoder(t5.tokenizer, t5.kind), "softmax")
    with pytest.raises(DataError, match="objective must be one of"):
        TrainSettings(out_dir="x", objective="ranking")  # type: ignore[arg-type]


def test_training_with_the_softmax_objective_raises_hr(tmp_path, tiny_llama_dir, tiny_instructions_dir):
    records = reranking_records(load_instruction_records(tiny_instructions_dir)["valid"])

    def hit_rate(folder) -> float:
        scores = CandidateScorer(load_model(folder, device="cpu")).score(
            [r["instruction"] for r in records], [r["candidates"] for r in records])
        return float(np.mean([int(np.argmax(s)) == r["target_index"] for s, r in zip(scores, records)]))

    settings = TrainSettings(out_dir=str(tmp_path / "out"), max_steps=24, learning_rate=3e-3, batch_size=16,
                             eval_steps=12, logging_steps=4, seed=0, objective="softmax")
    result = train(str(tiny_llama_dir), tiny_instructions_dir, settings)
    before, after = hit_rate(tiny_llama_dir), hit_rate(tmp_path / "out")
    assert after >= before + 0.15, (before, after)
    assert result.metrics["eval_hr@1"] == pytest.approx(after, abs=1e-6)


def test_negatives_are_a_seeded_draw_not_the_first_ones(tiny_llama_dir, tiny_instructions_dir):
    loaded = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    enc = PromptEncoder(loaded.tokenizer, loaded.kind)
    records = tiny_records(tiny_instructions_dir, 40, 7)
    last = 0
    for rec in records:
        (feat,) = tokenize_records([rec], enc, "softmax", negatives=2)
        kept = sorted([rec["target_index"], *sampled_negatives(rec, 2)])
        assert len(set(kept)) == 3 and sampled_negatives(rec, 2) == sampled_negatives(dict(rec), 2)
        assert feat["candidate_ids"] == [enc.answer_ids(rec["candidates"][j]) for j in kept]
        assert feat["candidate_ids"][feat["target_index"]] == enc.answer_ids(rec["target"])
        last += feat["target_index"] == 2
    # the target's place among the kept candidates tells nothing: with the first N others kept it
    # was last whenever it was listed after them (here 2 of 4 positions: half the lists or more)
    assert 0 < last < 0.5 * len(records)
    first = [[j for j in range(4) if j != r["target_index"]][:2] for r in records]
    assert sum(sampled_negatives(r, 2) != f for r, f in zip(records, first)) >= len(records) // 4
    assert sampled_negatives(records[0], None) == [j for j in range(4) if j != records[0]["target_index"]]
    with pytest.raises(DataError, match="softmax_negatives"):
        TrainSettings(out_dir="x", softmax_negatives=0)
