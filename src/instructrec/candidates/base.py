"""The retriever protocol shared by every first-stage model and classical baseline.

A retriever is built from a settings dataclass (the constructor stores settings only), learns in
`fit(dataset, split)` from training data alone (each user's items before the validation target;
the validation targets are used for early stopping only), and then answers three questions:

- `score(histories, candidates, queries=None, users=None) -> np.ndarray`: batched scores, one row
  per history. `candidates` is an int array (B, C) of item indices, or None for all items (B, n).
  This is what the evaluation harness calls; it must be fast.
- `recommend(history, k, exclude_seen=True) -> ItemList`: the top-k items for one history.
- `search(query, k, history=None) -> ItemList`: the top-k items for a text query (text retrievers;
  history-based ones reject it).

`save(path)` writes `settings.json` (the retriever's name and its settings) plus the learned state
(`state.safetensors` for tensors, arrays as safetensors too); `load_retriever(path)` rebuilds it.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit, leave_one_out
from instructrec.errors import InstructRecError, ModelError
from instructrec.itemlist import ItemList

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
STATE_FILE = "state.safetensors"

REGISTRY: dict[str, type[Retriever]] = {}


def register(name: str):
    """Class decorator: make a retriever constructible by name (CLI, `load_retriever`)."""

    def deco(cls: type[Retriever]) -> type[Retriever]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


class Retriever(ABC):
    """Base class; subclasses set `Settings` (a dataclass) and implement `_fit`, `score`, state I/O."""

    name: ClassVar[str] = "retriever"
    Settings: ClassVar[type]
    uses_history: ClassVar[bool] = True
    """Whether scores depend on the user's history (seqrec works)."""
    uses_query: ClassVar[bool] = False
    """Whether scores depend on a text query (search works)."""

    def __init__(self, settings: Any = None, **overrides: Any) -> None:
        settings = settings if settings is not None else self.Settings()
        if overrides:
            settings = type(settings)(**{**asdict(settings), **overrides})
        self.settings = settings
        self.n_items: int | None = None

    # -- learning ----------------------------------------------------------------------------
    def fit(self, dataset: Dataset, split: LeaveOneOutSplit | None = None) -> Retriever:
        """Learn from `split.train` (+ whole sequences of users too short to evaluate)."""
        split = split if split is not None else leave_one_out(dataset)
        if dataset.n_items == 0:
            raise InstructRecError("cannot fit a retriever on a dataset without items.")
        self.n_items = dataset.n_items
        self._fit(dataset, split)
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None: ...

    @property
    def fitted(self) -> bool:
        return self.n_items is not None

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ModelError(f"{self.name} is not fitted: call fit(dataset) or load a saved model first.")

    # -- scoring -----------------------------------------------------------------------------
    @abstractmethod
    def score(
        self,
        histories: Sequence[np.ndarray],
        candidates: np.ndarray | None = None,
        queries: Sequence[str] | None = None,
        users: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores (B, C) for `candidates` (B, C) item indices, or (B, n_items) when None.

        `users` (dataset user indices, -1 for unknown) lets user-embedding models use the learned
        user vector; `queries` feeds text retrievers. Higher is better.
        """

    def recommend(self, history: np.ndarray, k: int = 10, exclude_seen: bool = True,
                  query: str | None = None, user: int | None = None) -> ItemList:
        """The top-k items for one history, best first (seen items removed if asked)."""
        self._check_fitted()
        history = np.asarray(history, dtype=np.int64)
        scores = self.score([history], None, [query] if query is not None else None,
                            np.array([-1 if user is None else user]))[0].astype(np.float64)
        if exclude_seen and len(history):
            scores[history] = -np.inf
        return top_k(scores, k)

    def search(self, query: str, k: int = 10, history: np.ndarray | None = None,
               exclude_seen: bool = False) -> ItemList:
        """The top-k items for a text query (only for retrievers with `uses_query`)."""
        if not self.uses_query:
            raise ModelError(f"{self.name} ranks from histories, not text; use bm25 or embedding to search.")
        hist = np.zeros(0, dtype=np.int64) if history is None else history
        return self.recommend(hist, k, exclude_seen=exclude_seen, query=query)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write settings.json and the learned state into folder `path`, atomically (a temporary
        folder renamed into place: a killed save leaves the old folder or none, never half)."""
        from instructrec.atomic import atomic_folder

        self._check_fitted()
        path = Path(path)
        meta = {"retriever": self.name, "n_items": self.n_items, "settings": asdict(self.settings)}
        with atomic_folder(path) as tmp:
            self._save_state(tmp)
            (tmp / SETTINGS_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...


def top_k(scores: np.ndarray, k: int) -> ItemList:
    """The k best of a dense score vector as an ItemList (ties: lower item index first)."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return ItemList(np.zeros(0, dtype=np.int64), np.zeros(0))
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.lexsort((part, -scores[part]))]
    return ItemList(order, scores[order])


def catalogue_top(retriever: Any, histories: Sequence[np.ndarray], users: np.ndarray, n: int,
                  excludes: Sequence[Any], batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per history, the fitted `retriever`'s `n` best items over the whole catalogue, best first,
    and their scores (-inf where fewer than `n` items were left): none of them in that row's
    `excludes` (item indices: the history, a target). Scored `batch_size` histories per call. ONE
    place for the first stage's top-n: hard and two-stage candidate sets, hard training negatives."""
    top = np.empty((len(histories), n), dtype=np.int64)
    best = np.empty((len(histories), n), dtype=np.float64)
    users = np.asarray(users, dtype=np.int64)
    for start in range(0, len(histories), batch_size):
        hists = [np.asarray(h, dtype=np.int64) for h in histories[start : start + batch_size]]
        scores = np.array(retriever.score(hists, None, users=users[start : start + len(hists)]), dtype=np.float64)
        scores[np.isnan(scores)] = -np.inf
        for i, exclude in enumerate(excludes[start : start + len(hists)]):
            scores[i, np.fromiter(exclude, dtype=np.int64)] = -np.inf
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        top[start : start + len(hists)] = np.take_along_axis(part, order, 1)
        best[start : start + len(hists)] = np.take_along_axis(scores, top[start : start + len(hists)], 1)
    return top, best


def make_settings(cls: type[Retriever], values: dict[str, Any]) -> Any:
    """Settings for `cls` from a dict, with a clear error for an unknown field."""
    known = {f.name for f in fields(cls.Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InstructRecError(f"{cls.name}: unknown setting(s) {unknown}; known: {sorted(known)}.")
    return cls.Settings(**values)


def create_retriever(name: str, **settings: Any) -> Retriever:
    """A fresh (unfitted) retriever by registry name, e.g. `create_retriever("sasrec", epochs=5)`."""
    _import_all()
    if name not in REGISTRY:
        raise InstructRecError(f"unknown retriever {name!r}; choose one of {sorted(REGISTRY)}.")
    cls = REGISTRY[name]
    return cls(make_settings(cls, settings))


def load_retriever(path: str | Path) -> Retriever:
    """Rebuild a retriever saved with `Retriever.save`."""
    path = Path(path)
    if not (path / SETTINGS_FILE).exists():
        raise ModelError(f"{path} holds no saved retriever ({SETTINGS_FILE} missing); fit one with "
                         "`instructrec retrieve fit`.")
    try:
        meta = json.loads((path / SETTINGS_FILE).read_text())
        _import_for(meta["retriever"])
        cls = REGISTRY[meta["retriever"]]
    except (ValueError, KeyError) as exc:
        raise ModelError(f"{path / SETTINGS_FILE} is damaged or names an unknown retriever ({exc}).") from None
    model = cls(make_settings(cls, meta["settings"]))
    model.n_items = int(meta["n_items"])
    model._load_state(path)
    return model


def settings_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj) if is_dataclass(obj) else dict(obj)


RETRIEVER_MODULES = ("popularity", "bpr", "sasrec", "gru4rec", "bert4rec", "bm25", "embedding", "hybrid")


def _import_for(name: str) -> None:
    """Import the module registering `name` (the module of that name, else all of them): loading a
    saved recommender then imports its two retrievers, not every model class (a faster cold start)."""
    import importlib

    if name in RETRIEVER_MODULES:
        importlib.import_module(f"instructrec.candidates.{name}")
    if name not in REGISTRY:
        _import_all()


def _import_all() -> None:
    # Registration happens on import; import lazily so `import instructrec` stays light.
    import importlib

    for module in RETRIEVER_MODULES:
        importlib.import_module(f"instructrec.candidates.{module}")
