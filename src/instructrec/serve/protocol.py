"""What the serving layer needs from a recommender, and how it loads the saved one.

The HTTP API, the web page and the `recommend` command only use this small interface, so any
object that provides it plugs in (the saved InstructRec `Recommender`, or a test double).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from instructrec.errors import ModelError

if TYPE_CHECKING:
    from instructrec.data import Dataset
    from instructrec.recommender.results import RecommendResult


@runtime_checkable
class RecommenderLike(Protocol):
    """The part of `instructrec.recommender.Recommender` that serving uses."""

    dataset: Dataset

    def recommend(self, *, user_id: str | None = None, history: list[str] | None = None,
                  request: str | None = None, k: int = 10, candidates: list[str] | None = None,
                  exclude_seen: bool = True, conversation: Sequence[Any] = ()) -> RecommendResult: ...
    """`conversation`: earlier turns, oldest first, each with `request` and `items` (the item ids
    its answer showed); passed only when a client sends one."""

    def search_items(self, query: str, limit: int = 20) -> list[tuple[str, str]]: ...

    def has_user(self, user_id: str) -> bool: ...


def recommend_batch(rec: RecommenderLike, calls: Sequence[Mapping[str, Any]]) -> list[RecommendResult | Exception]:
    """`rec.recommend(**call)` for each call: in one batched `recommend_many` where the recommender
    has it (the saved `Recommender` does), else one call after the other; failures in their place."""
    many = getattr(rec, "recommend_many", None)
    if many is not None:
        return list(many(calls))
    out: list[RecommendResult | Exception] = []
    for call in calls:
        try:
            out.append(rec.recommend(**call))
        except Exception as exc:
            out.append(exc)
    return out


def load_recommender(model_dir: str | Path) -> RecommenderLike:
    """Load a saved recommender folder (written by `Recommender.save`, e.g. by the quickstart)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelError(
            f"model folder {path} does not exist; run `instructrec quickstart` and pass the recommender "
            "folder it prints (or any folder written by Recommender.save)."
        )
    try:
        module = importlib.import_module("instructrec.recommender")
        recommender_cls = module.Recommender
    except (ImportError, AttributeError):
        raise ModelError(
            "this installation has no instructrec.recommender.Recommender; update instructrec."
        ) from None
    return recommender_cls.load(path)


def split_history(values: Iterable[str], dataset: Dataset) -> list[str]:
    """Split `--history` values given as repeated options and/or comma-separated lists.

    Titles may themselves contain commas ("Godfather, The (1972)"), so a value is split greedily
    into the longest runs that name a known item id or title; a run that names nothing is kept
    as written, and the recommender reports it as unknown.
    """
    ids = set(map(str, dataset.items["item_id"]))
    titles = {str(t).casefold() for t in dataset.items["title"] if t is not None}

    def known(text: str) -> bool:
        return text in ids or text.casefold() in titles

    out: list[str] = []
    for value in values:
        parts = value.split(",")
        i = 0
        while i < len(parts):
            for j in range(len(parts), i, -1):
                piece = ",".join(parts[i:j]).strip()
                if known(piece):
                    out.append(piece)
                    i = j
                    break
            else:
                if parts[i].strip():
                    out.append(parts[i].strip())
                i += 1
    return out
