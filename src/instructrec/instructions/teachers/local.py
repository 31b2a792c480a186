"""The `local` teacher: a Hugging Face causal LM (e.g. SmolLM2-135M-Instruct) through `generate`.

Accepts a loaded model + tokenizer, or a local folder path (loaded with `from_pretrained`; never
the hub unless the caller allows it). Prompts use the tokenizer's chat template when it has one,
else a plain "System/User/Assistant" layout. Batched, left-padded, greedy by default so reruns
reproduce; replies go through the same cache and counted fallbacks as the `openai` teacher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructrec.instructions.teachers.base import TeacherError
from instructrec.instructions.teachers.llm_base import LLMTeacher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSettings:
    """Generation settings of the local teacher."""

    batch_size: int = 8
    """Prompts per `generate` call."""
    max_new_tokens: int = 48
    """Reply length cap."""
    max_prompt_tokens: int = 384
    """Prompts are cut from the left (oldest history first) to this length."""
    do_sample: bool = False
    """Greedy decoding keeps a rebuild identical."""


def _load(path: str | Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise TeacherError(f"local teacher model folder {path} does not exist; give a folder with a saved "
                           "causal LM and tokenizer (e.g. from `instructrec model ...`).")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise TeacherError(f"cannot load a causal LM from {path}: {exc}".split("\n")[0]) from None
    return model, tokenizer


class LocalTeacher(LLMTeacher):
    """P2/I1/I2 written by a local causal LM."""

    name = "local"

    def __init__(self, model: Any | str | Path, tokenizer: Any | None = None,
                 settings: LocalSettings | None = None, cache_path: str | Path | None = None) -> None:
        super().__init__(cache_path)
        if isinstance(model, (str, Path)):
            self._name = str(model)
            model, tokenizer = _load(model)
        else:
            self._name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)
        if tokenizer is None:
            raise TeacherError("a loaded model needs its tokenizer: LocalTeacher(model, tokenizer).")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.settings = settings or LocalSettings()
        self.chunk_size = self.settings.batch_size
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # decoder-only generation needs the prompts right-aligned
        self.tokenizer.truncation_side = "left"

    def _params(self) -> dict:
        s = self.settings
        return {"model": self._name, "max_new_tokens": s.max_new_tokens, "do_sample": s.do_sample,
                "max_prompt_tokens": s.max_prompt_tokens}

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"

    def _generate(self, batch: list[list[dict[str, str]]]) -> list[str | None]:
        import torch  # lazily: the rest of the package (and the CLI) should not pay for importing torch

        s = self.settings
        prompts = [self._prompt(m) for m in batch]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=s.max_prompt_tokens, add_special_tokens=False)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        try:
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=s.max_new_tokens, do_sample=s.do_sample,
                                          pad_token_id=self.tokenizer.pad_token_id)
        except RuntimeError as exc:  # e.g. out of memory: count as failures, keep the build going
            log.warning("local teacher generate failed: %s", exc)
            return [None] * len(batch)
        new = out[:, enc["input_ids"].shape[1]:]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]
