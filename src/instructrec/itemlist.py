"""`ItemList`: the one currency between stages (retrieval, reranking, evaluation, serving).

A retriever returns one (`Retriever.recommend` / `search`), the reranker takes one per user and
returns it scored with named columns (`retrieval`, `llm`, ...), the evaluation harness reads its
`scores`, and the recommender turns the ranked list into the API's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ItemList:
    """Item indices (into `Dataset.items`) with one score each, best first once `ranked()`.

    Attributes:
        items: integer item indices, shape (n,).
        scores: float scores, higher is better, shape (n,). NaN where nothing scored the item.
        titles: optional titles aligned with `items` (filled in for display).
        columns: named per-item score columns aligned with `items` (e.g. `retrieval`, `llm`): the
            signals that `scores` was computed from, kept for explanations and analysis.
    """

    items: np.ndarray
    scores: np.ndarray
    titles: list[str] | None = field(default=None)
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        if items.shape != scores.shape or items.ndim != 1:
            raise ValueError(f"items {items.shape} and scores {scores.shape} must be equal 1-d shapes")
        if self.titles is not None and len(self.titles) != len(items):
            raise ValueError(f"{len(self.titles)} titles for {len(items)} items")
        columns = {}
        for name, values in self.columns.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != items.shape:
                raise ValueError(f"column {name!r} has shape {values.shape}, items {items.shape}")
            columns[name] = values
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "columns", columns)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @classmethod
    def of(cls, items: np.ndarray | list[int], titles: list[str] | None = None) -> ItemList:
        """Unscored items (scores NaN), e.g. a candidate pool before reranking."""
        items = np.asarray(items, dtype=np.int64)
        return cls(items, np.full(items.shape, np.nan), titles)

    def with_scores(self, scores: np.ndarray, **columns: np.ndarray) -> ItemList:
        """The same items with new final scores and extra (or replaced) named columns."""
        return ItemList(self.items, scores, self.titles, {**self.columns, **columns})

    def take(self, order: np.ndarray) -> ItemList:
        """Rows `order` (an index array) of every field."""
        titles = [self.titles[i] for i in order] if self.titles is not None else None
        return ItemList(self.items[order], self.scores[order], titles,
                        {k: v[order] for k, v in self.columns.items()})

    def ranked(self, k: int | None = None) -> ItemList:
        """Best first; ties keep the input order (stable sort), so callers control tie-breaking.
        NaN scores sort last."""
        order = np.argsort(-np.nan_to_num(self.scores, nan=-np.inf), kind="stable")
        return self.take(order[:k] if k is not None else order)
