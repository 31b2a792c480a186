"""Hard training negatives: part of each instruction's negatives drawn from a first stage's favourites
(issue 15, lever 3).

Uniform random negatives teach a model plausibility: the target is a real game the user might buy,
the negatives are mostly obscure items. At test time with `hard:sasrec:9` candidates (and when the
LLM reranks a retriever's top 20, the way the system is served) every candidate is plausible, and
a model tuned on random negatives ranks them like SASRec and popularity do, below chance. So a
share of the negatives comes from the top `pool` items a fitted retriever ranks for the example's
own history (the user's items and the target excluded), the rest stays uniform: the model sees both
the lists it is scored on (LlamaRec trains on its retriever's candidates; the paper's hard setting
draws from SASRec).

A retriever fitted on the training sequences has seen each training example's target follow its
history, so it ranks that target near the top; the target is excluded from the pool, and the other
pool items are what the retriever finds plausible, as at test time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from instructrec.candidates.base import catalogue_top
from instructrec.errors import InstructRecError
from instructrec.instructions.render import sample_negatives


@dataclass(frozen=True)
class HardNegatives:
    """Draws `round(share * k)` of an instruction's `k` negatives from a retriever's top `pool`."""

    retriever: Any
    """A fitted retriever (its `score(histories, None, users=...)` over the catalogue)."""
    key: str
    """Identifies the retriever's fit (e.g. `sasrec-<stage hash>`): part of instruction build
    fingerprints, so negatives from another first stage never mix into a build."""
    share: float = 0.5
    """Fraction of each example's negatives taken from the pool (the rest: uniform random)."""
    pool: int = 20
    """How many of the retriever's best items (history and target excluded) the hard ones come from."""

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise InstructRecError(f"hard negatives: share {self.share} must be in (0, 1].")
        if self.pool < 1:
            raise InstructRecError(f"hard negatives: pool {self.pool} must be at least 1.")

    @property
    def fingerprint(self) -> str:
        return f"{self.key}:share={self.share}:pool={self.pool}"

    def favourites(self, histories: list[np.ndarray], users: np.ndarray, excludes: list[set[int]],
                   batch_size: int = 256) -> list[np.ndarray]:
        """Per example the retriever's top `pool` items for its history, best first, none of them in
        its `excludes` set. Scored in batches: one call per example would cost a 252K-example build
        (`games-full-gpu.yaml`) an hour of first-stage forwards."""
        if not histories:
            return []
        n = min(self.pool, int(self.retriever.n_items))
        items, scores = catalogue_top(self.retriever, histories, users, n, excludes, batch_size)
        return [row[np.isfinite(s)] for row, s in zip(items, scores, strict=True)]

    def draw(self, n_items: int, k: int, pool: np.ndarray, exclude: set[int], rng: random.Random) -> list[int]:
        """`k` distinct negatives outside `exclude`: the hard share at random from `pool` (one row of
        `favourites`; fewer when it is smaller), the rest uniform over the catalogue."""
        n_hard = min(round(self.share * k), len(pool))
        hard = rng.sample([int(i) for i in pool], n_hard) if n_hard else []
        rest = sample_negatives(n_items, k - len(hard), exclude | set(hard), rng)
        return hard + rest
