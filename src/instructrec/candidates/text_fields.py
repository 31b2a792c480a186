"""The text that describes an item, for the text retrievers (BM25, embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instructrec.data.dataset import Dataset

TEXT_FIELDS = ("title", "brand", "categories", "description")


def item_texts(dataset: Dataset, fields: Sequence[str] = ("title", "brand", "categories")) -> list[str]:
    """One string per item (index order): the chosen fields that are present, joined by '. '."""
    items = dataset.items
    out = []
    for row in items.itertuples(index=False):
        parts = []
        for name in fields:
            value = getattr(row, name)
            if isinstance(value, (list, tuple, np.ndarray)):
                value = ", ".join(str(v) for v in value)
            if value is not None and value == value and str(value).strip():
                parts.append(str(value))
        out.append(". ".join(parts))
    return out


def history_query(dataset_titles: np.ndarray, history: np.ndarray, n_items: int) -> str:
    """A text query from the titles of the `n_items` most recent history items (no query given)."""
    recent = np.asarray(history, dtype=np.int64)[-n_items:] if n_items > 0 else np.zeros(0, np.int64)
    return " ; ".join(str(dataset_titles[i]) for i in recent)
