"""What the Amazon review loaders (2018, 2023) share: field cleaning and the review -> Dataset step.

A review dump gives one frame of reviews (user_id, item_id, rating, timestamp, text, summary) and a
metadata dump gives items. Both loaders then apply the same protocol as the paper's data
(LLMRank's processing of Amazon 2018): drop interactions on items without a title, keep each
(user, item) pair's first review, k-core filter to a fixed point, and keep only the items that
remain. The reviews table is the same rows as the interactions, with their text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from instructrec.data.dataset import Dataset
from instructrec.data.lines import LineErrors
from instructrec.data.preprocess import deduplicate, k_core
from instructrec.errors import DataError

log = logging.getLogger(__name__)

_TAG = re.compile(r"<[^<>]{0,400}>")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")

ITEM_COLUMNS = ["item_id", "title", "description", "categories", "brand", "price"]


@dataclass(frozen=True)
class ReviewFilters:
    """Preprocessing settings of the Amazon loaders."""

    min_user: int = 5
    """k-core: minimum interactions per user (the paper uses 5-core; 0 or 1 = off)."""
    min_item: int = 5
    """k-core: minimum interactions per item (0 or 1 = off)."""
    dedup: bool = True
    """Keep only each (user, item) pair's earliest review."""
    drop_untitled: bool = True
    """Drop interactions on items that have no metadata or no title (as the paper's data does).
    When False such items stay, titled by their id."""


def strip_tags(value: Any) -> str | None:
    """Text without HTML tags (metadata titles/descriptions often carry markup); None if empty."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if "<" in text:
        text = _TAG.sub(" ", text)
    return text if text.strip() else None


def join_text(value: Any) -> str | None:
    """A description that is a string or a list of paragraphs -> one string."""
    if isinstance(value, (list, tuple)):
        value = " ".join(strip_tags(v) or "" for v in value)
    return strip_tags(value)


def flatten_categories(value: Any, *extra: Any) -> list[str]:
    """Category labels from a list, a list of lists (2014 dumps) or a string, plus `extra` labels
    prepended when not already present; order kept, duplicates dropped."""
    out: list[str] = []

    def add(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                add(x)
        elif v is not None:
            text = strip_tags(v)
            if text and text.strip() not in out:
                out.append(text.strip())

    for v in extra:
        add(v)
    add(value)
    return out


def parse_price(value: Any) -> float | None:
    """`"$12.99"`, `"$1,299.00"`, `12.99` -> a float; ranges take their low end; junk -> None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if np.isfinite(value) and value >= 0 else None
    text = str(value)
    if len(text) > 40:  # markup or prose, not a price
        return None
    match = _NUMBER.search(text)
    return float(match.group().replace(",", "")) if match else None


def reviews_frame(users: list, items: list, ratings: list, times: list, texts: list,
                  summaries: list) -> pd.DataFrame:
    """Column lists -> the long review frame (ids as strings, numeric columns coerced).

    Object dtype, not pandas' Arrow strings: converting millions of Python strings to Arrow is
    done once, when the `Dataset` is built.
    """
    return pd.DataFrame(
        {
            "user_id": _str_column(users),
            "item_id": _str_column(items),
            "rating": _number_column(ratings),
            "timestamp": _number_column(times),
            "text": pd.Series(texts, dtype=object),
            "summary": pd.Series(summaries, dtype=object),
        }
    )


def _number_column(values: list) -> np.ndarray | pd.Series:
    """Floats (None -> NaN) straight through numpy; anything odd (e.g. "n/a") via `to_numeric`."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")


def _str_column(values: list) -> pd.Series:
    if pd.api.types.infer_dtype(values, skipna=False) not in ("string", "empty"):
        values = [str(v) for v in values]
    return pd.Series(values, dtype=object)


def items_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(list(records), columns=ITEM_COLUMNS)
    return frame.drop_duplicates("item_id", keep="first")


def build_dataset(reviews: pd.DataFrame, items: pd.DataFrame | None, settings: ReviewFilters,
                  errors: LineErrors, *, source: str, extra_filters: dict[str, Any] | None = None,
                  ) -> Dataset:
    """Apply the untitled-item rule, de-duplication and k-core; return the `Dataset`."""
    filters: dict[str, Any] = dict(extra_filters or {})
    if items is None:
        if settings.drop_untitled:
            raise DataError(
                "no metadata file was found, so no item has a title; give the meta file "
                "(--meta) or keep untitled items (--keep-untitled)."
            )
        items = pd.DataFrame(columns=ITEM_COLUMNS)
    items = items[items["item_id"].isin(reviews["item_id"].unique())]
    titled = set(items["item_id"][items["title"].map(_has_text)])
    if settings.drop_untitled:
        keep = reviews["item_id"].isin(titled).to_numpy()
        filters["drop_untitled"] = {"interactions_dropped": int((~keep).sum())}
        if (~keep).any():
            log.info("dropped %d interactions on items without metadata or title", int((~keep).sum()))
        reviews = reviews[keep]
        if not len(reviews):
            raise DataError("no reviewed item has a title in the metadata; is the meta file of the same category?")
    else:
        missing = sorted(set(reviews["item_id"]) - set(items["item_id"]))
        filters["untitled_items_kept"] = len(set(reviews["item_id"]) - titled)
        if missing:
            items = pd.concat([items, pd.DataFrame({"item_id": missing})], ignore_index=True)
    if settings.dedup:
        reviews = deduplicate(reviews)
        filters["dedup"] = "first (user, item)"
    if settings.min_user > 1 or settings.min_item > 1:
        reviews = k_core(reviews, settings.min_user, settings.min_item)
        filters["k_core"] = {"min_user": settings.min_user, "min_item": settings.min_item}
        if not len(reviews):
            raise DataError(
                f"{settings.min_user}/{settings.min_item}-core filtering left no interactions; "
                "lower --min-user/--min-item."
            )
    filters["lines"] = errors.as_filter()
    items = items[items["item_id"].isin(reviews["item_id"].unique())]
    inter = reviews[["user_id", "item_id", "timestamp", "rating"]]
    revs = reviews[["user_id", "item_id", "rating", "text", "summary", "timestamp"]]
    return Dataset.from_frames(items, inter, revs, source=source, filters=filters)


def _has_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
