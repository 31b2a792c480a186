"""How an instruction and an answer become token ids: ONE place, used by training and scoring.

Causal models read the instruction through the tokenizer's chat template when it has one (the
user turn, then the assistant prefix), else as plain text followed by `answer_prefix`; the answer
is the target text followed by the end-of-sequence token. Seq2seq models read the instruction in
the encoder and the answer (plus EOS) in the decoder. Including the end token scores "the answer is
exactly this title", so a title that is a prefix of another does not win for free.

Over-long instructions: the history is cut, never the question or the candidates. Instructions
arrive as plain text, so the default `trim_history` keeps the first `keep_head_tokens` tokens (the
task statement that introduces the history) and removes the oldest history tokens right after it,
snapping the cut to the next item separator and marking it with " ... ". Builders that know the
structure can pass their own `HistoryTrimmer` (e.g. re-render the instruction with fewer history
items). Each truncation is logged and counted in `PromptEncoder.truncated`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from instructrec.errors import ModelError

log = logging.getLogger(__name__)

HistoryTrimmer = Callable[[str, int], str]
"""`(instruction_text, tokens_over_budget) -> shorter instruction_text` with fewer history items."""

ELLIPSIS = " ... "
SEPARATORS = (", ", "; ", "\n", " | ")


@dataclass
class PromptSettings:
    """Prompt shape and length limits shared by training and scoring."""

    max_prompt_tokens: int = 512
    """Longest instruction (after templating) in tokens; the paper uses 512. Longer ones lose history."""
    max_answer_tokens: int = 64
    """Longest answer in tokens (titles are short; longer targets are cut)."""
    use_chat_template: bool | None = None
    """Causal models: wrap the instruction in the tokenizer's chat template (unset: when it has one)."""
    answer_prefix: str = "\nAnswer:"
    """Causal models without a chat template: text between the instruction and the answer."""
    keep_head_tokens: int = 32
    """Default history trimming keeps this many leading instruction tokens (the task statement)."""

    def __post_init__(self) -> None:
        if self.max_prompt_tokens < 8 or self.max_answer_tokens < 1:
            raise ModelError("max_prompt_tokens must be >= 8 and max_answer_tokens >= 1")


def trim_history(tokenizer: Any, keep_head_tokens: int) -> HistoryTrimmer:
    """The default trimmer: drop `excess` tokens right after the instruction's head (the oldest
    history items in InstructRec's templates), cut at an item separator."""

    def trim(text: str, excess: int) -> str:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        ellipsis_len = len(tokenizer(ELLIPSIS, add_special_tokens=False)["input_ids"])
        start_tok = min(keep_head_tokens, len(offsets))
        end_tok = start_tok + excess + ellipsis_len
        if end_tok >= len(offsets):
            raise ModelError(
                f"instruction too long: it is {len(offsets)} tokens and cutting the history cannot save "
                f"{excess} tokens without touching the question or candidates; shorten the candidates or "
                "raise max_prompt_tokens"
            )
        start, end = offsets[start_tok][0], offsets[end_tok][0]
        window = text[end : end + 200]
        hits = [window.find(s) + len(s) for s in SEPARATORS if s in window]
        if hits:
            end += min(hits)
        return text[:start].rstrip() + ELLIPSIS + text[end:].lstrip()

    return trim


class PromptEncoder:
    """Turns instructions and answers into token ids for one tokenizer and backend kind."""

    def __init__(
        self,
        tokenizer: Any,
        kind: str,
        settings: PromptSettings | None = None,
        history_trimmer: HistoryTrimmer | None = None,
        item_offset: int | None = None,
        item_rows: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.item_offset = item_offset
        """Token id of item 0's soft token (`model.item_tokens`): each `<|item:I|>` marker becomes the one id
        `item_offset + I`; None (a model without item tokens): markers are plain text."""
        self.item_rows = item_rows
        """Items with a soft token: a marker past them is refused."""
        if item_offset is not None and kind != "causal":
            raise ModelError("item tokens are built for causal models only")
        self.kind = kind
        self.settings = settings or PromptSettings()
        self.trimmer = history_trimmer or trim_history(tokenizer, self.settings.keep_head_tokens)
        chat = self.settings.use_chat_template
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat and not has_template:
            raise ModelError("use_chat_template is set but the tokenizer has no chat template")
        self.chat = kind == "causal" and (has_template if chat is None else chat)
        self.truncated = 0
        """How many instructions had history removed to fit `max_prompt_tokens`."""
        if tokenizer.eos_token_id is None:
            raise ModelError("the tokenizer has no end-of-sequence token; answers cannot be delimited")

    @classmethod
    def for_model(cls, loaded: Any, settings: PromptSettings | None = None,
                  history_trimmer: HistoryTrimmer | None = None) -> PromptEncoder:
        """The encoder of a `LoadedModel`: its tokenizer and kind, and its item tokens if it has them."""
        from instructrec.model.item_tokens import find

        found = find(loaded.model) if hasattr(loaded.model, "modules") else None
        return cls(loaded.tokenizer, loaded.kind, settings, history_trimmer,
                   found.offset if found is not None else None, found.rows if found is not None else None)

    def render(self, instruction: str) -> list[int]:
        """Token ids of the instruction as the model reads it (no truncation)."""
        tok = self.tokenizer
        if self.kind == "seq2seq":
            return list(tok(instruction, add_special_tokens=True)["input_ids"])
        if self.chat:
            text = tok.apply_chat_template(
                [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
            )
            return self._ids(text)
        ids = self._ids(instruction + self.settings.answer_prefix)
        if tok.bos_token_id is not None and tok.bos_token_id != tok.eos_token_id:
            ids = [tok.bos_token_id, *ids]
        return ids

    def _ids(self, text: str) -> list[int]:
        from instructrec.model.item_markers import encode

        return encode(lambda piece: list(self.tokenizer(piece, add_special_tokens=False)["input_ids"]), text,
                      self.item_offset, self.item_rows)

    def prompt_ids(self, instruction: str) -> list[int]:
        """Instruction ids within `max_prompt_tokens`, history trimmed if needed (logged, counted)."""
        ids = self.render(instruction)
        limit = self.settings.max_prompt_tokens
        if len(ids) <= limit:
            return ids
        original = len(ids)
        text = instruction
        for _ in range(4):  # token counts of pieces are not additive; a few passes converge
            text = self.trimmer(text, len(ids) - limit)
            ids = self.render(text)
            if len(ids) <= limit:
                self.truncated += 1
                log.warning(
                    "instruction of %d tokens cut to %d by removing history (%d so far)",
                    original,
                    len(ids),
                    self.truncated,
                )
                return ids
        raise ModelError(f"instruction could not be cut below {limit} tokens; raise max_prompt_tokens")

    def answer_ids(self, answer: str) -> list[int]:
        """Answer ids followed by EOS (cut to `max_answer_tokens`, keeping the EOS)."""
        text = answer if (self.kind == "seq2seq" or self.chat) else " " + answer
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = ids[: self.settings.max_answer_tokens - 1]
        return [*ids, self.tokenizer.eos_token_id]
