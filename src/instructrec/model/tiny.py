"""A tiny random causal model with a tokenizer trained on the fly, for smoke tests and `--tiny` runs.

It exercises the whole pipeline (training, scoring, saving, serving) in seconds on a CPU without
any download. Its recommendations are only as good as what a few training steps teach it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from instructrec.atomic import atomic_folder


def build_tiny_causal(out_dir: str | Path, corpus: Iterable[str], *, vocab_size: int = 2000, hidden: int = 64,
                      layers: int = 2, seed: int = 0) -> Path:
    """Train a byte-level BPE tokenizer on `corpus`, create a random Llama, save both to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    with atomic_folder(out) as tmp:
        LlamaForCausalLM(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
