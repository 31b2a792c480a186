"""A test double of `instructrec.recommender.Recommender` for the serving layer.

It implements exactly the interface serving uses (`recommend`, `search_items`, `has_user`,
`dataset`) over a real `Dataset`: popularity, plus a bonus for each request word found in a title,
with the real request routing for the aspects. It also records how many calls ran at once, so the
tests can check that the server never runs two model calls concurrently. Not a product
recommender: it exists so the HTTP, CLI and web layers are exercised without loading an LLM.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pandas as pd

from instructrec.data import Dataset
from instructrec.data.dataset import Manifest
from instructrec.errors import DataError
from instructrec.recommender.results import RecommendedItem, RecommendResult
from instructrec.recommender.routing import attribute_vocabulary, route_request

XSS_SCRIPT_TITLE = "<script>alert(1)</script>"
XSS_IMG_TITLE = '<img src=x onerror="window.__xss=1"> Attack'
MARKUP_TITLE = "[red]Rich[/] markup [/oops]"  # terminal markup must print as text too
_STOP = {"the", "and", "for", "with", "something", "want", "like", "movie", "movies", "watch", "some", "that",
         "this", "would", "film", "films", "user", "about", "from", "you", "are", "what", "who", "its"}


def with_xss_items(ds: Dataset) -> Dataset:
    """The dataset plus three items whose titles are HTML/JS or Rich markup (never interacted with)."""
    extra = pd.DataFrame({"item_id": ["xss-1", "xss-2", "markup-1"],
                          "title": [XSS_SCRIPT_TITLE, XSS_IMG_TITLE, MARKUP_TITLE],
                          "description": [None] * 3, "categories": [[], [], []], "brand": [None] * 3,
                          "price": [None] * 3, "year": [None] * 3})
    items = pd.concat([ds.items, extra.astype({"price": "Float64", "year": "Int64"})], ignore_index=True)
    return Dataset(items, ds.interactions, ds.reviews, Manifest(source=ds.manifest.source + "+xss"))


class StubRecommender:
    """Popularity plus title-word matches, behind the `Recommender` interface."""

    def __init__(self, dataset: Dataset, delay_s: float = 0.0) -> None:
        self.dataset = dataset
        self.delay_s = delay_s
        counts = np.bincount(dataset.item_index_array, minlength=dataset.n_items).astype(np.float64)
        self._popularity = np.log1p(counts) / max(np.log1p(counts).max(), 1.0)
        self._titles = [str(t).casefold() for t in dataset.titles]
        self._by_title: dict[str, int] = {}
        for i, t in enumerate(self._titles):
            self._by_title.setdefault(t, i)
        self._vocabulary = attribute_vocabulary(dataset.items["categories"])
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.calls = 0

    def has_user(self, user_id: str) -> bool:
        return self.dataset.has_user(user_id)

    def _resolve(self, entry: str) -> int:
        """An item id or exact title (stripped, case-insensitive), as `Recommender.resolve_items` reads it."""
        entry = entry.strip()
        if entry in self.dataset._item_pos:
            return self.dataset._item_pos[entry]
        found = self._by_title.get(entry.casefold())
        if found is None:
            raise DataError(f"unknown item {entry!r} in the history; give an item id or an exact title.")
        return found

    def search_items(self, query: str, limit: int = 20) -> list[tuple[str, str]]:
        needle = query.casefold().strip()
        hits = [i for i, t in enumerate(self._titles) if needle in t]
        hits.sort(key=lambda i: -self._popularity[i])
        return [(str(self.dataset.item_ids[i]), self.dataset.title(i)) for i in hits[:limit]]

    def recommend(self, *, user_id: str | None = None, history: list[str] | None = None,
                  request: str | None = None, k: int = 10, candidates: list[str] | None = None,
                  exclude_seen: bool = True, conversation=()) -> RecommendResult:
        # earlier turns are read with the request, as the real recommender does
        request = " ".join([t.request for t in conversation] + [request or ""]).strip() or None
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            return self._recommend(user_id, history, request, k, candidates, exclude_seen)
        finally:
            with self._lock:
                self.active -= 1

    def _recommend(self, user_id, history, request, k, candidates, exclude_seen) -> RecommendResult:
        ds = self.dataset
        if user_id is not None:
            seen = [int(i) for i in ds.sequences[ds.user_index(user_id)]]
        else:
            seen = [self._resolve(h) for h in history or []]
        routed = route_request(request, has_history=bool(seen), vocabulary=self._vocabulary)
        words = [w for w in re.findall(r"[a-z0-9]+", (request or "").casefold()) if len(w) > 2 and w not in _STOP]
        pool = np.array(list(dict.fromkeys(self._resolve(c) for c in candidates)), dtype=np.int64) if candidates else np.arange(ds.n_items)
        if exclude_seen:
            pool = pool[~np.isin(pool, seen)]
        scores = np.array([self._popularity[i] + 2.0 * sum(w in self._titles[i] for w in words) for i in pool])
        order = np.argsort(-scores, kind="stable")[:k]
        items = [RecommendedItem(item_id=str(ds.item_ids[pool[j]]), title=ds.title(pool[j]), score=float(scores[j]),
                                 retrieval_score=float(self._popularity[pool[j]])) for j in order]
        parts = []
        if seen:
            parts.append("The user has watched: " + ", ".join(ds.title(i) for i in seen[-20:]) + ".")
        if routed.preference_text:
            parts.append(routed.preference_text + ".")
        if routed.intention_text:
            parts.append(routed.intention_text + ".")
        notes = [] if seen else ["cold start: no history, ranked by popularity and the request"]
        return RecommendResult(items=items, instruction=" ".join(parts), aspects=routed.aspects.key(),
                               template_id="stub-popularity", request_kind=routed.kind, notes=notes)
