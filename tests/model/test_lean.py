"""The lean loader (issue 12, fast start): a Llama in plain torch and the tokenizer without
transformers compute what transformers computes, through every path the scorers take."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from instructrec.model import load_model
from instructrec.model.lean import LeanLlama, LeanTokenizer, supports_config
from instructrec.model.listwise import ListwiseScorer
from instructrec.model.scoring import CandidateScorer, PrefixCache, ScoringSettings, prompt_forward

TEXTS = [
    "The user has played Turbo Kart, Gem Match and Star Blaster. Which one next?",
    "The user has played Goal Cup. Rank these.",
    "The user has played Turbo Kart, Gem Match and Star Blaster. Something calmer?",
]
CANDIDATES = [["Drift King", "Gem Match Deluxe", "Word Maze"], ["Home Run", "Slam Dunk"], ["Block Drop", "Turbo Kart 2"]]


@pytest.fixture(scope="module")
def both(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu"), load_model(tiny_llama_dir, device="cpu", lean=True)


def test_lean_load_gives_the_plain_torch_model_and_tokenizer(both):
    hf, lean = both
    assert isinstance(lean.model, LeanLlama) and isinstance(lean.tokenizer, LeanTokenizer)
    assert not isinstance(hf.model, LeanLlama)
    assert len(lean.tokenizer) == len(hf.tokenizer)
    for attr in ("eos_token_id", "bos_token_id", "pad_token_id", "eos_token", "pad_token"):
        assert getattr(lean.tokenizer, attr) == getattr(hf.tokenizer, attr), attr
    for text in TEXTS:
        got = lean.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        want = hf.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert got["input_ids"] == list(want["input_ids"])
        assert got["offset_mapping"] == [tuple(o) for o in want["offset_mapping"]]


def test_padded_batch_with_positions_matches_transformers(both):
    hf, lean = both
    prompts = [hf.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    with torch.inference_mode():
        want, _ = prompt_forward(hf.model, prompts, hf.tokenizer.pad_token_id, keep_last=False, use_cache=False)
        got, mask = prompt_forward(lean.model, prompts, lean.tokenizer.pad_token_id, keep_last=False, use_cache=False)
    real = mask.bool()  # padding rows are never read
    torch.testing.assert_close(got.logits[real], want.logits[real], atol=1e-4, rtol=1e-4)


def test_both_heads_score_as_transformers_with_and_without_the_prefix_cache(both):
    hf, lean = both
    settings = ScoringSettings(instruction_batch_size=2, candidate_batch_size=3)
    want = CandidateScorer(hf, settings).score(TEXTS, CANDIDATES)
    for cache in (None, PrefixCache(max_entries=4)):
        for _ in range(2):  # the second round reads the cache
            got = CandidateScorer(lean, settings, prefix_cache=cache).score(TEXTS, CANDIDATES)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w, atol=1e-4)
    if cache is not None:
        assert cache.tokens_reused > 0
    lists = [t + "\nA. x\nB. y\nC. z" for t in TEXTS]
    want = ListwiseScorer(hf, batch_size=2).score(lists, [["x", "y", "z"]] * 3)
    cache = PrefixCache(max_entries=4)
    for scorer in (ListwiseScorer(lean, batch_size=2), ListwiseScorer(lean, batch_size=2, prefix_cache=cache)):
        for _ in range(2):
            for g, w in zip(scorer.score(lists, [["x", "y", "z"]] * 3), want, strict=True):
                np.testing.assert_allclose(g, w, atol=1e-4)


def test_lora_adapter_merges_into_the_lean_model(tiny_llama_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)  # B starts at zero: make the adapter change something
    peft_model.save_pretrained(tmp_path / "adapter")
    (tmp_path / "adapter" / "instructrec.json").write_text(json.dumps({"base_model": str(tiny_llama_dir)}))
    hf = load_model(tmp_path / "adapter", device="cpu", merge_adapter=True)
    lean = load_model(tmp_path / "adapter", device="cpu", merge_adapter=True, lean=True)
    plain = load_model(tiny_llama_dir, device="cpu", lean=True)
    assert isinstance(lean.model, LeanLlama)
    want = CandidateScorer(hf).score(TEXTS, CANDIDATES)
    got = CandidateScorer(lean).score(TEXTS, CANDIDATES)
    base_scores = CandidateScorer(plain).score(TEXTS, CANDIDATES)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)
    assert max(np.abs(g - b).max() for g, b in zip(got, base_scores, strict=True)) > 1e-3  # the adapter is in


def test_default_model_chat_template_and_scores_match_transformers():
    hf = load_model("default", device="cpu")
    lean = load_model("default", device="cpu", lean=True)
    assert isinstance(lean.model, LeanLlama)
    messages = [{"role": "user", "content": "I liked Toy Story; something funny?"}]
    assert lean.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
        hf.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    lists = [TEXTS[0] + "\nA. Drift King\nB. Word Maze"]
    np.testing.assert_allclose(ListwiseScorer(lean).score(lists, [["x", "y"]])[0],
                               ListwiseScorer(hf).score(lists, [["x", "y"]])[0], atol=1e-4)


def test_configurations_it_does_not_compute_load_through_transformers(tiny_llama_dir, tmp_path):
    cfg = json.loads((tiny_llama_dir / "config.json").read_text())
    assert supports_config(cfg)
    for change in ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, {"attention_bias": True},
                   {"model_type": "mistral"}, {"hidden_act": "gelu"}):
        assert not supports_config({**cfg, **change}), change
    import shutil

    folder = tmp_path / "biased"
    shutil.copytree(tiny_llama_dir, folder)
    scaled = {**cfg, "rope_parameters": {**cfg["rope_parameters"], "rope_type": "linear", "factor": 2.0}}
    (folder / "config.json").write_text(json.dumps(scaled))
    loaded = load_model(folder, device="cpu", lean=True)
    assert not isinstance(loaded.model, LeanLlama)
    assert loaded.model.config.rope_parameters["rope_type"] == "linear"


def test_lean_load_imports_no_transformers(tiny_llama_dir):
    code = ("import sys; from instructrec.model import load_model; from instructrec.model.listwise import ListwiseScorer; "
            f"m = load_model({str(tiny_llama_dir)!r}, device='cpu', lean=True); "
            "ListwiseScorer(m).score(['The user has played Goal Cup.\\nA. x\\nB. y'], [['x', 'y']]); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('transformers', 'peft')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
