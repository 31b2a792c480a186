"""Loading models: kinds, local folders, GGUF, adapters, and one clear error for bad input."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from instructrec.errors import ModelError
from instructrec.model import backend, load_model
from instructrec.model import defaults as model_defaults


def test_missing_path_is_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope", device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        load_model("./not/here", device="cpu")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="without config.json"):
        load_model(tmp_path, device="cpu")


def test_uncached_hub_id_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_model("someone/definitely-not-cached-model", device="cpu")
    assert time.perf_counter() - start < 20  # never the 46 s network hang


def test_non_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        load_model(bad, device="cpu")
    truncated = tmp_path / "broken.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(ModelError, match="could not be read as a GGUF"):
        load_model(truncated, device="cpu")


def test_forced_kind_must_match(tiny_llama_dir, tiny_t5_dir):
    with pytest.raises(ModelError, match="holds a causal model"):
        load_model(tiny_llama_dir, kind="seq2seq", device="cpu")
    assert load_model(tiny_t5_dir, kind="seq2seq", device="cpu").kind == "seq2seq"


def test_tokenizer_model_mismatch(tmp_path, tiny_llama_dir, tiny_tokenizer):
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_llama_dir, folder)
    bigger = tiny_tokenizer.__class__.from_pretrained(tiny_llama_dir)
    bigger.add_tokens([f"extra{i}" for i in range(50)])
    bigger.save_pretrained(folder)
    with pytest.raises(ModelError, match="tokenizer/model mismatch"):
        load_model(folder, device="cpu")


def test_weights_of_another_architecture(tmp_path, tiny_llama_dir, tiny_t5_dir):
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_llama_dir, folder)
    shutil.copy(tiny_t5_dir / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(ModelError, match="do not load"):
        load_model(folder, device="cpu")


def test_adapter_on_wrong_base_is_clear_error(tmp_path, tiny_llama_dir, tiny_t5_dir):
    from peft import LoraConfig, TaskType, get_peft_model

    base = load_model(tiny_llama_dir, device="cpu")
    peft_model = get_peft_model(base.model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, target_modules="all-linear"))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    loaded = load_model(adapter, device="cpu")
    assert loaded.kind == "causal" and hasattr(loaded.model, "peft_config")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny_t5_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="does not fit its base model"):
        load_model(adapter, device="cpu")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("INSTRUCTREC_CACHE", str(tmp_path / "c"))
    assert model_defaults.converted_dir() == tmp_path / "c" / "models" / "SmolLM2-135M-Instruct"


def test_incomplete_conversion_is_not_used(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert not model_defaults.is_complete_model_dir(half)


@pytest.mark.slow
def test_default_model_converts_once_and_scores(monkeypatch, tmp_path):
    pytest.importorskip("gguf")
    try:
        model_defaults.bundled_gguf()
    except ModelError as exc:
        pytest.skip(str(exc))
    from instructrec.model.scoring import CandidateScorer, naive_scores

    monkeypatch.setenv("INSTRUCTREC_CACHE", str(tmp_path))
    loaded = load_model("default", device="cpu")
    assert model_defaults.is_complete_model_dir(model_defaults.converted_dir())
    assert not list(model_defaults.converted_dir().parent.glob(".*"))  # no temp folders left
    assert loaded.kind == "causal" and loaded.tokenizer.chat_template
    ins = "I loved Mario Kart 8 and Forza Horizon 4. Recommend me a racing game."
    cands = ["Gran Turismo 5", "Tetris", "FIFA 12"]
    scores = CandidateScorer(loaded).score([ins], [cands])[0]
    import numpy as np

    np.testing.assert_allclose(scores, naive_scores(loaded, ins, cands), atol=1e-3)
    start = time.perf_counter()
    again = load_model("default", device="cpu")  # loads the converted folder, no second conversion
    assert time.perf_counter() - start < 15
    assert again.model.config.model_type == "llama"


@pytest.mark.parametrize("use_dora", [False, True])
def test_merged_adapter_scores_as_the_adapter(tmp_path, tiny_llama_dir, use_dora):
    """merge_adapter (inference) folds LoRA into the weights itself, or through peft for variants
    it does not cover (DoRA); either way the model computes what the adapter does."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(1)
    base = load_model(tiny_llama_dir, device="cpu")
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules="all-linear",
                        init_lora_weights=False, use_dora=use_dora)  # random B: the adapter changes the output
    adapter = tmp_path / "adapter"
    get_peft_model(base.model, config).save_pretrained(adapter)
    ids = torch.tensor([[1, 5, 9, 17, 33, 60, 2]])
    with torch.inference_mode():
        plain = load_model(tiny_llama_dir, device="cpu").model(input_ids=ids).logits
        wrapped = load_model(adapter, device="cpu")
        merged = load_model(adapter, device="cpu", merge_adapter=True)
        assert hasattr(wrapped.model, "peft_config") and not hasattr(merged.model, "peft_config")
        want, got = wrapped.model(input_ids=ids).logits, merged.model(input_ids=ids).logits
    assert (want - plain).abs().max() > 1e-3  # the adapter does something
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert backend._merge_lora(load_model(tiny_llama_dir, device="cpu").model, adapter, cfg) is not use_dora
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
