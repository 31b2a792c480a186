"""Validation HR@1: the metric that picks the best checkpoint.

Each validation reranking (T3) record's candidates are scored with the model being trained, by
the same scorer that serves predictions (`model.listwise.make_scorer`: the listwise head for
letter-labelled records, else the title likelihood); HR@1 is the share of records whose target
scores highest. The records are sharded over the processes of a distributed run and the hits
gathered, so every process gets the same number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from instructrec.model.backend import LoadedModel, ModelKind
from instructrec.model.listwise import make_scorer
from instructrec.model.prompt import PromptSettings
from instructrec.model.scoring import Normalize
from instructrec.training.data import is_listwise, record_prior


@dataclass
class CandidateHitRate:
    """HR@1 over the candidates of validation reranking records."""

    records: list[dict[str, Any]]
    """Reranking records: `instruction`, `candidates`, `target_index`."""
    tokenizer: Any
    """The model's tokenizer."""
    kind: ModelKind
    """`causal` or `seq2seq`."""
    prompt: PromptSettings
    """The prompt settings training uses."""
    normalize: Normalize = "mean"
    """Score normalisation: mean (length-normalised) or sum log-likelihood."""
    prior_weight: float = 0.0
    """Weight of the records' first-stage prior added to the model's scores (`TrainSettings.prior_weight`)."""

    def __call__(self, model: Any, accelerator: Any) -> float | None:
        """HR@1 of `model` (unwrapped from `accelerator`), None without records."""
        if not self.records:
            return None
        acc = accelerator
        n = math.ceil(len(self.records) / acc.num_processes)
        shard = self.records[acc.process_index * n : (acc.process_index + 1) * n]
        weights = [1.0] * len(shard) + [0.0] * (n - len(shard))
        shard = shard + [self.records[0]] * (n - len(shard))  # equal work on every process
        listwise = all(is_listwise(r) for r in self.records)
        loaded = LoadedModel(acc.unwrap_model(model), self.tokenizer, self.kind, "training",
                             "listwise" if listwise else "title")
        scorer = make_scorer(loaded, self.prompt, normalize=self.normalize)
        scores = scorer.score([r["instruction"] for r in shard], [r["candidates"] for r in shard])
        if self.prior_weight:  # rank as the model serves: its scores on top of the first stage's prior
            scores = [np.asarray(s) + self.prior_weight * np.asarray(record_prior(r) or 0.0) for s, r in zip(scores, shard)]
        hits = sum(w * float(int(np.argmax(s)) == int(r["target_index"])) for w, s, r in zip(weights, scores, shard))
        totals = acc.reduce(torch.tensor([hits, sum(weights)], device=acc.device), reduction="sum")
        return float(totals[0] / totals[1])
