"""The text that describes an item, for the text retrievers (BM25, embeddings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from instructrec.data.dataset import Dataset

TEXT_FIELDS = ("title", "year", "brand", "categories", "description")
WHOLE_TEXT_FIELDS = ("title", "year", "categories", "brand", "description")
"""Everything an item carries that a request may name (the hybrid and dense retrievers' default)."""


def _field_text(value: object) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # NaN, pd.NA, None
        return ""
    return str(value).strip()


def item_texts(dataset: Dataset, fields: Sequence[str] = ("title", "brand", "categories"),
               max_chars: int | None = None) -> list[str]:
    """One string per item (index order): the chosen fields that are present, joined by '. '
    (each cut to `max_chars` characters when given, so a long description cannot drown the rest)."""
    items = dataset.items
    out = []
    for row in items.itertuples(index=False):
        parts = []
        for name in fields:
            text = _field_text(getattr(row, name))
            if text:
                parts.append(text if max_chars is None else text[:max_chars])
        out.append(". ".join(parts))
    return out


def history_query(dataset_titles: np.ndarray, history: np.ndarray, n_items: int) -> str:
    """A text query from the titles of the `n_items` most recent history items (no query given)."""
    recent = np.asarray(history, dtype=np.int64)[-n_items:] if n_items > 0 else np.zeros(0, np.int64)
    return " ; ".join(str(dataset_titles[i]) for i in recent)
