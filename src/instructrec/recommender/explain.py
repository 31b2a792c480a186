"""One-line reasons for recommended items: which attributes, request words or history items each
matched. Computed from what the first stage already holds (item texts, dense item vectors), so a
reason costs no model call."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from instructrec.candidates.text_fields import WHOLE_TEXT_FIELDS, item_texts
from instructrec.data.dataset import Dataset
from instructrec.recommender.constraints import Catalogue, Constraints

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'-]+")
_STOP = frozenset(
    ["the", "and", "for", "with", "something", "want", "like", "movie", "movies", "watch", "some", "that", "this", "would", "film", "films", "about", "from", "you", "are", "what", "who", "its", "any", "anything", "please", "give", "show", "find", "need", "looking", "have", "more", "less", "not", "one", "get", "good", "great", "nice", "really", "very", "just", "want", "need", "me", "my", "our", "your", "want", "kind", "sort", "type"])
SIMILAR_MIN = 0.55
"""Cosine similarity above which a history item is named as "like ..." (MiniLM whole-text vectors)."""


def _item_vectors(retriever: object) -> np.ndarray | None:
    """Dense item vectors a text retriever holds (hybrid: its dense side), if any."""
    for obj in (getattr(retriever, "dense", None), retriever):
        vec = getattr(obj, "item_vectors", None)
        if isinstance(vec, np.ndarray):
            return vec
    return None


class Explainer:
    """Reasons for items of one dataset, given the request, its constraints and the history."""

    def __init__(self, dataset: Dataset, catalogue: Catalogue, text_retriever: object | None = None) -> None:
        self.dataset, self.catalogue = dataset, catalogue
        self._tokens = [frozenset(_TOKEN.findall(t.casefold())) for t in item_texts(dataset, WHOLE_TEXT_FIELDS)]
        self._vectors = _item_vectors(text_retriever) if text_retriever is not None else None

    def reason(self, item: int, request: str | None, constraints: Constraints, history: Sequence[int],
               from_request: bool) -> str:
        parts = []
        attrs = self.catalogue.matched(item, constraints)
        if attrs:
            parts.append("matches " + ", ".join(attrs))
        words = [w for w in dict.fromkeys(_TOKEN.findall((request or "").casefold()))
                 if w not in _STOP and len(w) > 2 and w in self._tokens[item]]
        if words:
            parts.append("request words: " + ", ".join(words[:4]))
        like = self._similar(item, history)
        if like is not None:
            parts.append(f"like {self.dataset.title(like)!r} in your history")
        if not parts:
            parts.append("retrieved for your request" if from_request else "fits your history")
        return "; ".join(parts)

    def _similar(self, item: int, history: Sequence[int]) -> int | None:
        if self._vectors is None or not len(history):
            return None
        recent = np.asarray(history, dtype=np.int64)[-20:]
        sims = self._vectors[recent] @ self._vectors[item]
        best = int(np.argmax(sims))
        return int(recent[best]) if float(sims[best]) >= SIMILAR_MIN else None
