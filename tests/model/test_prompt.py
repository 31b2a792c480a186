"""The prompt format shared by training and scoring, and history truncation."""

from __future__ import annotations

import logging

import pytest

from instructrec.errors import ModelError
from instructrec.model import PromptEncoder, PromptSettings
from instructrec.training.data import tokenize_records

HISTORY = ", ".join(f"Game Number {i}" for i in range(200))
QUESTION = " The user now wants a racing game. Candidates: Turbo Kart; Gem Match. Which candidate?"
LONG = "The user has played " + HISTORY + "." + QUESTION


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_long_instruction_loses_history_not_question(kind, tiny_tokenizer, caplog):
    enc = PromptEncoder(tiny_tokenizer, kind, PromptSettings(max_prompt_tokens=120, keep_head_tokens=6))
    with caplog.at_level(logging.WARNING):
        ids = enc.prompt_ids(LONG)
    assert len(ids) <= 120
    text = tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert text.startswith("The user has played")
    assert QUESTION.strip() in text  # question and candidates intact
    assert "Game Number 199" in text and "Game Number 0," not in text  # oldest history dropped first
    assert " ... " in text
    assert enc.truncated == 1 and "cut to" in caplog.text


def test_short_instruction_untouched(tiny_tokenizer):
    enc = PromptEncoder(tiny_tokenizer, "causal", PromptSettings(max_prompt_tokens=120))
    assert enc.prompt_ids("A racing game.") == enc.render("A racing game.")
    assert enc.truncated == 0


def test_question_alone_too_long_is_clear_error(tiny_tokenizer):
    enc = PromptEncoder(tiny_tokenizer, "causal", PromptSettings(max_prompt_tokens=10, keep_head_tokens=4))
    with pytest.raises(ModelError, match="instruction too long"):
        enc.prompt_ids(QUESTION * 3)


def test_custom_history_trimmer_hook(tiny_tokenizer):
    calls = []

    def rerender(text: str, excess: int) -> str:
        calls.append(excess)
        return "The user has played Game Number 199." + QUESTION

    enc = PromptEncoder(tiny_tokenizer, "causal", PromptSettings(max_prompt_tokens=120), history_trimmer=rerender)
    text = tiny_tokenizer.decode(enc.prompt_ids(LONG), skip_special_tokens=True)
    assert calls and calls[0] > 0
    assert text.startswith("The user has played Game Number 199.")


def test_answer_ends_with_eos_and_is_capped(tiny_tokenizer):
    enc = PromptEncoder(tiny_tokenizer, "causal", PromptSettings(max_answer_tokens=4))
    ids = enc.answer_ids("Turbo Kart Speed Rally Drift King Block Drop")
    assert len(ids) == 4 and ids[-1] == tiny_tokenizer.eos_token_id


def test_chat_template_used_and_same_in_training(tiny_tokenizer):
    tok = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}"
    enc = PromptEncoder(tok, "causal")
    assert enc.chat
    prompt = enc.prompt_ids("A racing game.")
    assert tok.decode(prompt).startswith("<s>user: A racing game.")
    feats = tokenize_records([{"instruction": "A racing game.", "target": "Turbo Kart"}], enc)[0]
    n = len(prompt)
    assert feats["input_ids"][:n] == prompt  # training reads exactly what scoring reads
    assert feats["labels"][:n] == [-100] * n
    assert feats["labels"][n:] == enc.answer_ids("Turbo Kart")
    with pytest.raises(ModelError, match="no chat template"):
        PromptEncoder(tiny_tokenizer, "causal", PromptSettings(use_chat_template=True))
