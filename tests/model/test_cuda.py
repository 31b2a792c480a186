"""GPU checks (skipped without CUDA): shared-prefix scoring and mixed-precision training there."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instructrec.model import load_model
from instructrec.model.scoring import CandidateScorer, naive_scores

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

INSTRUCTIONS = ["The user has played Turbo Kart. The user now wants a racing game.", "A puzzle game please."]
CANDIDATES = [["Turbo Kart", "Gem Match", "Star Blaster Laser Strike"], ["Block Drop", "Word Maze Gem Match"]]


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_scoring_equivalence_on_gpu(arch, tiny_llama_dir, tiny_t5_dir):
    loaded = load_model(tiny_llama_dir if arch == "llama" else tiny_t5_dir, device="cuda", dtype="float32")
    assert next(loaded.model.parameters()).is_cuda
    fast = CandidateScorer(loaded).score(INSTRUCTIONS, CANDIDATES)
    for ins, cands, got in zip(INSTRUCTIONS, CANDIDATES, fast):
        np.testing.assert_allclose(got, naive_scores(loaded, ins, cands), atol=1e-3)


def test_bf16_scoring_ranks_like_fp32(tiny_llama_dir):
    fp32 = CandidateScorer(load_model(tiny_llama_dir, device="cuda", dtype="float32")).score(INSTRUCTIONS, CANDIDATES)
    bf16 = CandidateScorer(load_model(tiny_llama_dir, device="cuda", dtype="bfloat16")).score(INSTRUCTIONS, CANDIDATES)
    for a, b in zip(fp32, bf16):
        np.testing.assert_allclose(a, b, atol=0.1)


def test_mixed_precision_training_on_gpu(tmp_path, tiny_llama_dir, tiny_instructions_dir):
    from instructrec.training import TrainSettings, train

    out = tmp_path / "out"
    result = train(str(tiny_llama_dir), tiny_instructions_dir,
                   TrainSettings(out_dir=str(out), max_steps=40, learning_rate=3e-3, batch_size=16, eval_steps=20, seed=0))
    state = json.loads((out / "checkpoint-40" / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses[-1] < 0.85 * losses[0]
    assert result.global_step == 40 and "eval_hr@1" in result.metrics
    meta = json.loads((out / "instructrec.json").read_text())
    assert meta["mixed_precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
