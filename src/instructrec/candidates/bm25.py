"""BM25 over item text (bm25s, Lucene variant) for the search tasks.

Items are indexed by their text (title, brand, categories by default). A query is scored against
every item; without a query (sequential recommendation) the titles of the most recent
`history_items` history items form the query, a content-based fallback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instructrec.candidates.base import Retriever, register
from instructrec.candidates.text_fields import history_query, item_texts
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit


@dataclass
class BM25Settings:
    """BM25 settings."""

    k1: float = 1.5
    """Term-frequency saturation."""
    b: float = 0.75
    """Length normalisation."""
    fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories"])
    """Item fields indexed (title, brand, categories, description)."""
    stopwords: str = "en"
    """bm25s stopword list."""
    history_items: int = 3
    """Recent history titles used as the query when no query is given."""


@register("bm25")
class BM25(Retriever):
    Settings = BM25Settings
    uses_query = True

    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        import bm25s

        s = self.settings
        self.titles = np.asarray(dataset.titles, dtype=object)
        tokens = bm25s.tokenize(item_texts(dataset, s.fields), stopwords=s.stopwords, show_progress=False)
        self.index = bm25s.BM25(k1=s.k1, b=s.b)
        self.index.index(tokens, show_progress=False)

    def query_scores(self, query: str) -> np.ndarray:
        import bm25s

        words = bm25s.tokenize([query], stopwords=self.settings.stopwords, return_ids=False,
                               show_progress=False)[0]
        words = [w for w in words if w in self.index.vocab_dict]
        if not words:
            return np.zeros(self.n_items, dtype=np.float32)
        return np.asarray(self.index.get_scores(words), dtype=np.float32)

    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        width = self.n_items if candidates is None else np.asarray(candidates).shape[1]
        out = np.empty((len(histories), width), dtype=np.float32)
        for i, hist in enumerate(histories):
            q = queries[i] if queries is not None else history_query(self.titles, hist, self.settings.history_items)
            full = self.query_scores(q)
            out[i] = full if candidates is None else full[np.asarray(candidates[i], dtype=np.int64)]
        return out

    def _save_state(self, path: Path) -> None:
        self.index.save(str(path / "bm25"), show_progress=False)
        (path / "titles.json").write_text(json.dumps(list(map(str, self.titles))))

    def _load_state(self, path: Path) -> None:
        import bm25s

        self.index = bm25s.BM25.load(str(path / "bm25"))
        self.titles = np.asarray(json.loads((path / "titles.json").read_text()), dtype=object)
