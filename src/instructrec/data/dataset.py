"""`Dataset`: items, users' chronological interaction sequences and reviews, in memory and on disk.

On disk a dataset is a folder of Parquet files (`items.parquet`, `interactions.parquet`,
`reviews.parquet`) plus `manifest.json` (source, filters, counts, format version). The folder is
written under a temporary name and renamed into place, so an interrupted save never leaves a
folder that later loads as if complete.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from instructrec.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"

ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("year", pa.int64()),
    ]
)
INTERACTION_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.int64()),
        ("rating", pa.float64()),
    ]
)
REVIEW_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("text", pa.string()),
        ("summary", pa.string()),
        ("timestamp", pa.int64()),
    ]
)
SCHEMAS = (ITEM_SCHEMA, INTERACTION_SCHEMA, REVIEW_SCHEMA)
"""items, interactions, reviews: the three tables of a dataset, in this order."""


def clean_text(value: Any) -> str | None:
    """Unescape HTML entities (twice, for double-escaped dumps) and normalise whitespace."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    if "&" in text:  # the common case has no entity
        text = html.unescape(html.unescape(text))
    text = " ".join(text.split())
    return text or None


def clean_long_text(value: Any) -> str | None:
    """`clean_text` for review texts, fast on the common case (runs on millions of reviews).

    Entities are unescaped; texts holding a line break, tab or no-break space get all whitespace
    runs collapsed to one space; the rest are only stripped (a search for double spaces would
    cost ten times the other checks together, and they do no harm in a review).
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    if "&" in text:
        text = html.unescape(html.unescape(text))
    if "\n" in text or "\t" in text or "\r" in text or "\xa0" in text:
        text = " ".join(text.split())
    else:
        text = text.strip()
    return text or None


def _clean_long_column(values: pd.Series) -> pd.Series:
    """`clean_long_text` over a column; texts that need nothing skip the function call."""
    return pd.Series(
        [v if type(v) is str and v and "&" not in v and "\n" not in v and "\t" not in v and "\r" not in v
         and "\xa0" not in v and not v[0].isspace() and not v[-1].isspace() else clean_long_text(v)
         for v in values],
        dtype=object,
    )


@dataclass
class Manifest:
    """What a saved dataset is: where it came from, how it was filtered, how big it is."""

    source: str
    """Loader name and input path(s), e.g. `recbole:../shared/data/amazon-games`."""
    filters: dict[str, Any] = field(default_factory=dict)
    """Preprocessing applied (k-core thresholds, de-duplication, ...)."""
    counts: dict[str, int] = field(default_factory=dict)
    """users, items, interactions, reviews."""
    version: int = FORMAT_VERSION
    """On-disk format version."""
    created: str = ""
    """UTC time of writing."""


def _conform(frame: pd.DataFrame, schema: pa.Schema, required: Sequence[str], what: str) -> pd.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what}: missing required column(s) {missing}; found {list(frame.columns)}. "
            "Rename the columns or pick the loader that matches this format."
        )
    out = pd.DataFrame(index=range(len(frame)))
    for name in schema.names:
        col = frame[name].reset_index(drop=True) if name in frame.columns else None
        typ = schema.field(name).type
        if col is None and pa.types.is_list(typ):
            out[name] = pd.Series([[] for _ in range(len(frame))], dtype=object)
        elif col is None and (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
            out[name] = _masked(np.full(len(frame), np.nan), pa.types.is_integer(typ))
        elif col is None:
            out[name] = pd.Series([None] * len(frame), dtype=object)
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            out[name] = _masked(values, pa.types.is_integer(typ))
        elif pa.types.is_list(typ):
            out[name] = [
                [str(c) for c in v if str(c).strip()] if isinstance(v, (list, tuple, np.ndarray)) else []
                for v in col
            ]
        else:
            # Object dtype on purpose: building pandas' Arrow-backed strings from Python objects
            # (and iterating them back) dominates the cost at millions of reviews; `from_frames`
            # converts once at the end.
            values = col.to_numpy(dtype=object, na_value=None)
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                values = np.asarray([None if v is None else str(v) for v in values], dtype=object)
            out[name] = pd.Series(values, dtype=object)
    return out


def _masked(values: np.ndarray, integer: bool) -> pd.arrays.IntegerArray | pd.arrays.FloatingArray:
    """Float values (NaN = missing) -> a nullable Int64 (rounded) or Float64 array, built directly
    (pandas' generic coercion is slow on a million rows)."""
    mask = np.isnan(values)
    data = np.where(mask, 0.0, values)
    if integer:
        return pd.arrays.IntegerArray(np.round(data).astype(np.int64), mask)
    return pd.arrays.FloatingArray(data, mask)


def to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A frame's schema columns as an Arrow table. Column by column: `pa.Table.from_pandas` takes
    about three times as long on object columns of a million strings."""
    return pa.Table.from_arrays(
        [pa.array(frame[f.name], type=f.type, from_pandas=True) for f in schema], schema=schema
    )


def _normalise(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The in-memory form of a table, identical for a fresh and a loaded dataset: strings as
    pandas' Arrow-backed `str`, nullable Int64/Float64 numbers, categories as Python lists."""
    if not isinstance(frame, pa.Table):
        frame = to_table(frame, schema)
    out = frame.to_pandas()
    for name in schema.names:
        typ = schema.field(name).type
        if pa.types.is_integer(typ):
            out[name] = out[name].astype("Int64")
        elif pa.types.is_floating(typ):
            out[name] = out[name].astype("Float64")
        elif pa.types.is_list(typ):
            out[name] = [list(c) if c is not None else [] for c in out[name]]
    return out


class Dataset:
    """Items, interactions (chronological per user) and reviews.

    Users and items get dense integer indices: item index = row of `items`, user index = position
    in `user_ids` (users in order of first appearance in the input). `sequences[u]` is user `u`'s
    item indices, oldest first. Build one with `Dataset.from_frames` (which validates and
    normalises) or a loader in `instructrec.data.loaders`; `save`/`load` round-trip it.
    """

    def __init__(self, items: pd.DataFrame, interactions: pd.DataFrame, reviews: pd.DataFrame,
                 manifest: Manifest) -> None:
        self.items = items.reset_index(drop=True)
        self.interactions = interactions.reset_index(drop=True)
        self.reviews = reviews.reset_index(drop=True)
        self.item_ids: np.ndarray = self.items["item_id"].to_numpy(dtype=object)
        self._item_pos: dict[str, int] = {iid: i for i, iid in enumerate(self.item_ids)}
        if len(self._item_pos) != len(self.item_ids):
            dup = self.items["item_id"][self.items["item_id"].duplicated()].iloc[0]
            raise DataError(f"items: item id {dup!r} occurs more than once; item ids must be unique.")
        codes, uniques = pd.factorize(self.interactions["user_id"], sort=False)
        self.user_ids: np.ndarray = np.asarray(uniques, dtype=object)
        self._user_pos: dict[str, int] = {uid: i for i, uid in enumerate(self.user_ids)}
        item_idx = pd.Index(self.item_ids).get_indexer(self.interactions["item_id"])
        if (item_idx < 0).any():
            bad = self.interactions["item_id"].iloc[int(np.argmax(item_idx < 0))]
            raise DataError(f"interactions: item id {bad!r} is not in the item table.")
        self.user_index_array = codes.astype(np.int64)
        self.item_index_array = item_idx.astype(np.int64)
        if len(codes) and np.any(np.diff(codes) < 0):
            raise DataError("interactions must be grouped by user (use Dataset.from_frames to normalise).")
        bounds = np.flatnonzero(np.diff(codes)) + 1
        self.sequences: list[np.ndarray] = np.split(self.item_index_array, bounds) if len(codes) else []
        self.manifest = manifest
        self.manifest.counts = self.counts()

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        items: pd.DataFrame,
        interactions: pd.DataFrame,
        reviews: pd.DataFrame | None = None,
        *,
        source: str,
        filters: dict[str, Any] | None = None,
        unknown_items: Literal["error", "drop"] = "error",
        drop_items_without_title: bool = False,
    ) -> Dataset:
        """Validate, clean and order raw frames into a `Dataset`.

        Titles and descriptions get HTML entities unescaped and whitespace normalised; users are
        ordered by first appearance and each user's interactions are sorted by timestamp (stable,
        so rows without timestamps keep their input order). Items without a title keep their id as
        title unless `drop_items_without_title`. No de-duplication or k-core here: see
        `instructrec.data.preprocess`.
        """
        items = _conform(items, ITEM_SCHEMA, ["item_id"], "items")
        inter = _conform(interactions, INTERACTION_SCHEMA, ["user_id", "item_id"], "interactions")
        revs = _conform(reviews if reviews is not None else pd.DataFrame(columns=REVIEW_SCHEMA.names),
                        REVIEW_SCHEMA, ["user_id", "item_id"], "reviews")
        if items["item_id"].isna().any() or inter["item_id"].isna().any() or inter["user_id"].isna().any():
            raise DataError("ids must not be empty: found an empty user_id or item_id.")
        items["title"] = [clean_text(t) for t in items["title"]]
        items["description"] = [clean_text(t) for t in items["description"]]
        items["brand"] = [clean_text(t) for t in items["brand"]]
        items["categories"] = [[c for c in (clean_text(x) for x in cats) if c] for cats in items["categories"]]
        if drop_items_without_title:
            items = items[items["title"].notna()]
        else:
            items["title"] = items["title"].where(items["title"].notna(), items["item_id"])
        items = items.drop_duplicates("item_id", keep="first").reset_index(drop=True)
        known = inter["item_id"].isin(set(items["item_id"]))
        if not known.all():
            if unknown_items == "error":
                bad = inter["item_id"][~known].iloc[0]
                raise DataError(
                    f"interactions: {int((~known).sum())} row(s) refer to items missing from the item "
                    f"table (first: {bad!r}). Add the items or drop those rows."
                )
            inter = inter[known]
        inter = sort_interactions(inter)
        if len(revs):
            revs["text"] = _clean_long_column(revs["text"])
            revs["summary"] = _clean_long_column(revs["summary"])
        items, inter, revs = (_normalise(f, schema) for f, schema in zip((items, inter, revs), SCHEMAS))
        return cls(items, inter, revs, Manifest(source=source, filters=dict(filters or {})))

    # -- lookups -----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def item_index(self, item_id: str) -> int:
        """Index of an item id; a clear error for an unknown one."""
        try:
            return self._item_pos[str(item_id)]
        except KeyError:
            raise DataError(f"unknown item id {item_id!r}; see `instructrec data stats` for the catalogue.") from None

    def user_index(self, user_id: str) -> int:
        """Index of a user id; a clear error for an unknown one."""
        try:
            return self._user_pos[str(user_id)]
        except KeyError:
            raise DataError(f"unknown user id {user_id!r}; give the user's history instead.") from None

    def has_user(self, user_id: str) -> bool:
        return str(user_id) in self._user_pos

    def title(self, item: int) -> str:
        return str(self.items.at[int(item), "title"])

    @property
    def titles(self) -> np.ndarray:
        """All titles by item index (cached)."""
        if not hasattr(self, "_titles"):
            self._titles = self.items["title"].to_numpy(dtype=object)
        return self._titles

    def counts(self) -> dict[str, int]:
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "reviews": len(self.reviews),
        }

    def stats(self) -> dict[str, float | int]:
        """Size, sparsity, history lengths and how much text the items carry."""
        lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=self.n_users)
        n = max(self.n_items, 1)
        has = lambda col: float(self.items[col].notna().sum()) / n  # noqa: E731
        return {
            **self.counts(),
            "sparsity": 1.0 - self.n_interactions / max(self.n_users * self.n_items, 1),
            "history_min": int(lengths.min()) if len(lengths) else 0,
            "history_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "history_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "history_max": int(lengths.max()) if len(lengths) else 0,
            "items_with_title": float((self.items["title"] != self.items["item_id"]).sum()) / n,
            "items_with_description": has("description"),
            "items_with_categories": float(sum(1 for c in self.items["categories"] if len(c))) / n,
            "items_with_brand": has("brand"),
            "items_with_price": float(self.items["price"].notna().sum()) / n,
            "has_timestamps": int(self.interactions["timestamp"].notna().any()),
            "has_ratings": int(self.interactions["rating"].notna().any()),
        }

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the dataset folder atomically (temporary folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            for name, frame, schema in (
                ("items", self.items, ITEM_SCHEMA),
                ("interactions", self.interactions, INTERACTION_SCHEMA),
                ("reviews", self.reviews, REVIEW_SCHEMA),
            ):
                pq.write_table(to_table(frame, schema), tmp / f"{name}.parquet")
            self.manifest.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            (tmp / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2) + "\n")
            if path.exists():
                if not (path / MANIFEST).exists() and any(path.iterdir()):
                    raise DataError(f"{path} exists and is not a dataset folder; choose another --out.")
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Load a folder written by `save`."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"dataset folder {path} does not exist; create it with `instructrec data prepare`.")
        if not (path / MANIFEST).exists():
            raise DataError(
                f"{path} has no {MANIFEST}: it is not a complete dataset folder "
                "(run `instructrec data prepare ... --out` again)."
            )
        try:
            meta = json.loads((path / MANIFEST).read_text())
            manifest = Manifest(**meta)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path / MANIFEST} is damaged ({exc}); prepare the dataset again.") from None
        if manifest.version > FORMAT_VERSION:
            raise DataError(f"{path} has format version {manifest.version}; upgrade instructrec to read it.")
        frames = []
        for name in ("items", "interactions", "reviews"):
            try:
                frames.append(pq.read_table(path / f"{name}.parquet"))
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"cannot read {path / (name + '.parquet')}: {exc}; prepare the dataset again.") from None
        items, inter, revs = (_normalise(t, schema) for t, schema in zip(frames, SCHEMAS))
        return cls(items, inter, revs, manifest)

    def __repr__(self) -> str:
        return (f"Dataset(source={self.manifest.source!r}, users={self.n_users}, items={self.n_items}, "
                f"interactions={self.n_interactions}, reviews={len(self.reviews)})")


def interaction_order(inter: pd.DataFrame, user_code: np.ndarray | None = None) -> np.ndarray:
    """Row order that groups users (first-appearance order) and sorts each user's rows by time,
    stably (rows without a timestamp keep their input order, first). `user_code`: the frame's
    `pd.factorize(user_id)` codes when the caller has them already."""
    if user_code is None:
        user_code = pd.factorize(inter["user_id"], sort=False)[0]
    ts = inter["timestamp"].astype("Float64").fillna(-np.inf).to_numpy(dtype=np.float64)
    du = np.diff(user_code)
    with np.errstate(invalid="ignore"):  # -inf - -inf is NaN: counts as unordered, lexsort decides
        ordered = (du >= 0).all() and ((du > 0) | (np.diff(ts) >= 0)).all()
    if ordered:  # the common case after a first sort: an O(n) check instead of a sort
        return np.arange(len(inter))
    return np.lexsort((ts, user_code))  # lexsort is stable


def sort_interactions(inter: pd.DataFrame) -> pd.DataFrame:
    """Group by user (first-appearance order) and sort each user's rows by time, stably."""
    if not len(inter):
        return inter.reset_index(drop=True)
    order = interaction_order(inter)
    if np.array_equal(order, np.arange(len(inter))):  # skip copying every column
        return inter.reset_index(drop=True)
    return inter.iloc[order].reset_index(drop=True)
