"""The training loss: negative log-likelihood of the answer tokens only.

For causal models the LM head is computed only at the positions that predict an answer token
(about 1.3x faster on a CPU; prompts are long, answers short) where the model supports it.
Listwise rows (a `choices` row in the batch: their candidates' letter tokens) have one answer
token, the target's letter; their logits outside the choices are masked, so their term is the
cross-entropy over the candidates' letters, exactly what `model.listwise` scores.

`candidates_softmax_loss` is the `softmax` objective (`TrainSettings.objective`): cross-entropy of
the target over every candidate title's log-likelihood after the prompt, computed by the title
head's own score (`model.scoring.packed_answer_logprobs`: each prompt and all its candidates in one
row under a block attention mask, equal to the scorer's shared-prefix path within float tolerance),
so training optimises the score the reranker ranks with.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from instructrec.model.backend import ModelKind
from instructrec.model.scoring import normalized, packed_answer_logprobs, supports_masked_logits
from instructrec.training.collate import IGNORE


def answer_only_loss(model: Any, kind: ModelKind, inputs: dict[str, torch.Tensor], num_items: Any = None) -> torch.Tensor:
    """Token-summed NLL of the answer tokens divided by `num_items` (answer tokens in the whole
    accumulated batch, as the Trainer counts them) or by this batch's answer tokens."""
    labels = inputs["labels"]
    if not (labels != IGNORE).any():  # only candidates-softmax rows (`objective: softmax`): no forward to run
        return torch.zeros((), device=labels.device)
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


def candidates_softmax_loss(model: Any, inputs: dict[str, Any], pad_id: int, normalize: str = "mean",
                            temperature: float = 1.0, prior_weight: float = 0.0) -> torch.Tensor:
    """Mean over the batch's candidate rows (`candidate_ids`, `target_index` >= 0) of the
    cross-entropy of the target among the candidates, each scored by its title's summed (`sum`) or
    mean (`mean`) token log-likelihood after the prompt (the first `prompt_length` tokens of its
    `input_ids`), divided by `temperature`, plus `prior_weight` times its first-stage prior
    (`candidate_prior`, when the batch has one: the model learns a residual over it); 0 without
    such rows."""
    targets = inputs["target_index"]
    rows = (targets >= 0).nonzero().squeeze(1).tolist()
    if not rows:
        return inputs["input_ids"].new_zeros((), dtype=torch.float32)
    ids = inputs["input_ids"]
    prompts = [ids[i, : int(inputs["prompt_length"][i])].tolist() for i in rows]
    answers = [inputs["candidate_ids"][i] for i in rows]
    sums, counts = packed_answer_logprobs(model, prompts, answers, pad_id)
    scores = normalized(sums, counts, normalize)  # type: ignore[arg-type]
    sizes = [len(a) for a in answers]
    width = max(sizes)
    table = scores.new_full((len(rows), width), float("-inf"))
    owner = torch.cat([torch.full((n,), g, device=scores.device) for g, n in enumerate(sizes)])
    slot = torch.cat([torch.arange(n, device=scores.device) for n in sizes])
    table = table.index_put((owner, slot), scores) / temperature
    if prior_weight and "candidate_prior" in inputs:
        prior = torch.tensor([v for i in rows for v in inputs["candidate_prior"][i]], dtype=table.dtype,
                             device=table.device)
        table = table.index_put((owner, slot), prior_weight * prior, accumulate=True)
    return F.cross_entropy(table, targets[rows].to(scores.device))
