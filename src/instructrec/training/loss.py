"""The training loss: negative log-likelihood of the answer tokens only.

For causal models the LM head is computed only at the positions that predict an answer token
(about 1.3x faster on a CPU; prompts are long, answers short) where the model supports it.
Listwise rows (a `choices` row in the batch: their candidates' letter tokens) have one answer
token, the target's letter; their logits outside the choices are masked, so their term is the
cross-entropy over the candidates' letters, exactly what `model.listwise` scores.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from instructrec.model.backend import ModelKind
from instructrec.model.scoring import supports_masked_logits
from instructrec.training.collate import IGNORE


def answer_only_loss(model: Any, kind: ModelKind, inputs: dict[str, torch.Tensor], num_items: Any = None) -> torch.Tensor:
    """Token-summed NLL of the answer tokens divided by `num_items` (answer tokens in the whole
    accumulated batch, as the Trainer counts them) or by this batch's answer tokens."""
    labels = inputs["labels"]
    if kind == "causal":
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][labels[:, 1:] != IGNORE]
        if supports_masked_logits(model):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep).logits
        else:  # full head, then select
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        if logits.dim() == 3:
            logits = logits[keep]
        if "choices" in inputs:
            logits = only_choices(logits, inputs["choices"][keep.nonzero()[:, 0]])
    else:
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels).logits
        targets = labels[labels != IGNORE]
        logits = logits[labels != IGNORE]
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    denom = num_items if num_items is not None else targets.numel()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / denom


def only_choices(logits: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """`logits` (N, V) with every token outside each row's `choices` (N, K; -1 = none) at -inf;
    rows without choices are left as they are."""
    choices = choices.to(logits.device)
    valid = choices >= 0
    allowed = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    rows, cols = valid.nonzero(as_tuple=True)
    allowed[rows, choices[rows, cols]] = True
    allowed[~valid.any(1)] = True
    return logits.masked_fill(~allowed, float("-inf"))
