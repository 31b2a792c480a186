"""`ItemList`: the one currency between stages (retrieval, reranking, evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ItemList:
    """Item indices (into `Dataset.items`) with one score each, best first once `ranked()`.

    Attributes:
        items: integer item indices, shape (n,).
        scores: float scores, higher is better, shape (n,).
        titles: optional titles aligned with `items` (filled in for display).
    """

    items: np.ndarray
    scores: np.ndarray
    titles: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        if items.shape != scores.shape or items.ndim != 1:
            raise ValueError(f"items {items.shape} and scores {scores.shape} must be equal 1-d shapes")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def ranked(self, k: int | None = None) -> ItemList:
        """Best first; ties keep the input order (stable sort), so callers control tie-breaking."""
        order = np.argsort(-self.scores, kind="stable")
        if k is not None:
            order = order[:k]
        titles = [self.titles[i] for i in order] if self.titles is not None else None
        return ItemList(self.items[order], self.scores[order], titles)
