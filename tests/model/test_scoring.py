"""Shared-prefix scoring equals naive per-candidate scoring, for both backends."""

from __future__ import annotations

import numpy as np
import pytest

from instructrec.errors import DataError
from instructrec.model import load_model
from instructrec.model.scoring import CandidateScorer, ScoringSettings, naive_scores

INSTRUCTIONS = [
    "The user has played Turbo Kart, Gem Match. The user now wants a racing game. Which one?",
    "A puzzle game please.",
    "The user has played Star Blaster, Goal Cup, Home Run, Word Maze. The user now wants a sports game.",
]
CANDIDATES = [
    ["Turbo Kart", "Gem Match", "Star Blaster Laser Strike", "Home Run"],
    ["Block Drop", "Word Maze Gem Match Drift King"],
    ["Goal Cup", "Slam Dunk", "Drift King", "Gun Squad", "Speed Rally"],
]


@pytest.fixture(scope="module", params=["llama", "t5"])
def tiny(request, tiny_llama_dir, tiny_t5_dir):
    return load_model(tiny_llama_dir if request.param == "llama" else tiny_t5_dir, device="cpu")


@pytest.mark.parametrize("normalize", ["mean", "sum"])
@pytest.mark.parametrize("batches", [(8, 64), (1, 1), (2, 3)])
def test_shared_prefix_equals_naive(tiny, normalize, batches):
    scorer = CandidateScorer(tiny, ScoringSettings(instruction_batch_size=batches[0], candidate_batch_size=batches[1]))
    fast = scorer.score(INSTRUCTIONS, CANDIDATES, normalize=normalize)
    for ins, cands, got in zip(INSTRUCTIONS, CANDIDATES, fast):
        want = naive_scores(tiny, ins, cands, normalize)
        assert got.shape == (len(cands),)
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
        assert np.all(np.isfinite(got))


def test_kind_detected(tiny_llama_dir, tiny_t5_dir):
    assert load_model(tiny_llama_dir, device="cpu").kind == "causal"
    assert load_model(tiny_t5_dir, device="cpu").kind == "seq2seq"


def test_mean_differs_from_sum_by_length(tiny):
    scorer = CandidateScorer(tiny)
    mean = scorer.score(INSTRUCTIONS[:1], CANDIDATES[:1], "mean")[0]
    total = scorer.score(INSTRUCTIONS[:1], CANDIDATES[:1], "sum")[0]
    lengths = np.array([len(scorer.encoder.answer_ids(c)) for c in CANDIDATES[0]])
    np.testing.assert_allclose(total / lengths, mean, atol=1e-5)


def test_rank_orders_best_first(tiny):
    ranked = CandidateScorer(tiny).rank(INSTRUCTIONS[0], CANDIDATES[0])
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert sorted(t for t, _ in ranked) == sorted(CANDIDATES[0])


def test_empty_candidates_is_clear_error(tiny):
    with pytest.raises(DataError, match="empty candidate list"):
        CandidateScorer(tiny).score(["x"], [[]])
    with pytest.raises(DataError, match="candidate lists"):
        CandidateScorer(tiny).score(["x", "y"], [["a"]])


def test_length_groups_put_similar_lengths_together_and_cover_every_index():
    from instructrec.model.scoring import length_groups

    groups = length_groups([30, 5, 31, 6, 29], 2)
    assert groups == [[1, 3], [4, 0], [2]]  # padded to 6, 30 and 31 tokens instead of 30, 31, 29
    assert length_groups([], 8) == []


@pytest.mark.parametrize("lean", [False, True])
def test_packed_candidates_equal_naive_scores(tiny_llama_dir, lean):
    """One row per prompt with all its answers behind it (block attention mask, restarted positions)
    gives each answer its own log-likelihood: prompts and answer lists of different lengths."""
    import torch

    from instructrec.model.prompt import PromptEncoder
    from instructrec.model.scoring import normalized, packed_answer_logprobs

    loaded = load_model(tiny_llama_dir, device="cpu", lean=lean)
    enc = PromptEncoder(loaded.tokenizer, loaded.kind)
    prompts = [enc.prompt_ids(t) for t in INSTRUCTIONS]
    answers = [[enc.answer_ids(c) for c in cands] for cands in CANDIDATES]
    with torch.inference_mode():
        sums, counts = packed_answer_logprobs(loaded.model, prompts, answers, loaded.tokenizer.pad_token_id)
    assert counts.tolist() == [float(len(a)) for cands in answers for a in cands]
    got = normalized(sums, counts, "mean").numpy()
    want = np.concatenate([naive_scores(loaded, ins, cands, "mean") for ins, cands in zip(INSTRUCTIONS, CANDIDATES)])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    with pytest.raises(DataError, match="non-empty answer"):
        packed_answer_logprobs(loaded.model, prompts[:1], [[]], loaded.tokenizer.pad_token_id)
