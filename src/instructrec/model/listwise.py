"""The listwise ranking head: one prompt forward ranks every candidate (LlamaRec, arXiv 2311.02089).

Candidates are listed under single-token letters (`A.`, `B.`, ...; `instructions.render.LETTERS`)
and the instruction asks for the letter of the best one. A candidate's score is the log-softmax,
over the candidates' letters only, of its letter's logit at the answer position: the first token
the model would write. Training (`training.loss`) is cross-entropy over the same letter logits,
so what is trained is exactly what is scored.

Against the paper's head (the title's log-likelihood, one decoder pass over every candidate's
tokens) this costs one forward of the prompt and nothing per candidate.

    >>> scorer = ListwiseScorer(load_model("runs/x/models/tuned-..."))
    >>> scorer.score([instruction_text], [["Gran Turismo 5", "FIFA 12"]])   # [array([-0.1, -2.4])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instructrec.errors import DataError, ModelError
from instructrec.instructions.render import LETTERS
from instructrec.model.backend import LoadedModel
from instructrec.model.prompt import HistoryTrimmer, PromptEncoder, PromptSettings
from instructrec.model.scoring import (
    PrefixCache,
    PromptScorer,
    _forward_params,
    cache_keyword,
    length_groups,
    prompt_forward,
)

HEADS = ("title", "listwise")
"""Ranking heads: `title` (the paper's title log-likelihood) and `listwise` (letter logits)."""


def label_token_ids(encoder: PromptEncoder, n: int = len(LETTERS)) -> list[int]:
    """The token id of each of the first `n` letters as the candidate list writes it (after a line
    break): the answer is the token the prompt shows next to the candidate, which a small model
    learns to copy. A clear error where a letter is not one token or two letters share one."""
    if n > len(LETTERS):
        raise DataError(f"the listwise head labels at most {len(LETTERS)} candidates, not {n}")
    tok = encoder.tokenizer
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    ids = []
    for letter in LETTERS[:n]:
        line = tok("\n" + letter, add_special_tokens=False)["input_ids"]
        if len(line) != len(newline) + 1 or line[: len(newline)] != newline:
            raise ModelError(f"the tokenizer does not write the label {letter!r} as one token after a line break; "
                             "the listwise head needs single-token labels (use the title head for this model)")
        ids.append(int(line[-1]))
    if len(set(ids)) != len(ids):
        raise ModelError("two candidate labels map to the same token; use the title head for this model")
    return ids


class ListwiseScorer(PromptScorer):
    """Scores of the candidates of letter-labelled instructions from one forward per instruction.

    Same call as `CandidateScorer.score` (the titles only give the candidate count: the instruction
    already lists them), so `LLMScores` and everything above it take either head.
    """

    head = "listwise"
    candidate_labels = "letters"
    """How the instructions this scorer reads list their candidates (`instructions.render`)."""

    def __init__(self, model: LoadedModel, prompt: PromptSettings | None = None,
                 history_trimmer: HistoryTrimmer | None = None, batch_size: int = 8,
                 prefix_cache: PrefixCache | None = None) -> None:
        if model.kind != "causal":
            raise ModelError("the listwise head scores causal (decoder-only) models; use the title head for seq2seq")
        self.loaded, self.model = model, model.model
        self.encoder = PromptEncoder.for_model(model, prompt, history_trimmer)
        self.label_ids = torch.tensor(label_token_ids(self.encoder))
        self.batch_size = batch_size
        self.pad_id = model.tokenizer.pad_token_id
        params = _forward_params(self.model)
        self._keep_last = "logits_to_keep" in params
        self._cache_kw = cache_keyword(self.model)
        self.prefix_cache = prefix_cache
        """Reuse of recent prompts' KV caches (`PrefixCache`): a known user's next prompt runs only
        the tokens after its chat header and history (the request, the candidate list, the answer
        hint); None: every prompt is run whole."""

    def score(self, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
              normalize: Any = None) -> list[np.ndarray]:
        """Per instruction, the log-probability of each candidate's letter among the candidates'
        letters (float64, aligned with the candidates; `normalize` is accepted for the common call
        and has no meaning here)."""
        if len(instructions) != len(candidates):
            raise DataError(f"{len(instructions)} instructions but {len(candidates)} candidate lists")
        counts = [len(c) for c in candidates]
        for i, n in enumerate(counts):
            if not 1 <= n <= len(LETTERS):
                raise DataError(f"instruction {i} has {n} candidates; the listwise head ranks 1 to {len(LETTERS)}")
        out: list[np.ndarray] = [np.empty(0)] * len(instructions)
        prompts = [self.encoder.prompt_ids(t) for t in instructions]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for group in length_groups([len(p) for p in prompts], self.batch_size):
                    logits = self.answer_logits([prompts[i] for i in group])
                    for row, i in enumerate(group):
                        out[i] = F.log_softmax(logits[row, : counts[i]], dim=-1).double().numpy()
        finally:
            self.model.train(was_training)
        return out

    def answer_logits(self, prompts: list[list[int]]) -> torch.Tensor:
        """(len(prompts), len(LETTERS)) letter logits at each prompt's answer position."""
        out, _ = prompt_forward(self.model, prompts, self.pad_id, prefix_cache=self.prefix_cache,
                                cache_kw=self._cache_kw, keep_last=self._keep_last, use_cache=False)
        return out.logits[:, -1].float().cpu()[:, self.label_ids]


def make_scorer(model: LoadedModel, prompt: PromptSettings | None = None,
                prefix_cache: PrefixCache | None = None, **scoring: Any) -> Any:
    """The scorer of the head the model was trained with (`LoadedModel.head`): `ListwiseScorer` or
    the paper's `CandidateScorer` (`scoring`: its `ScoringSettings` fields), reusing `prefix_cache`
    (causal models) when given."""
    if model.head == "listwise":
        return ListwiseScorer(model, prompt, prefix_cache=prefix_cache)
    if model.head != "title":
        raise ModelError(f"unknown ranking head {model.head!r}; expected one of {', '.join(HEADS)}")
    from instructrec.model.scoring import CandidateScorer, ScoringSettings

    return CandidateScorer(model, ScoringSettings(**scoring) if scoring else None, prompt, prefix_cache=prefix_cache)
