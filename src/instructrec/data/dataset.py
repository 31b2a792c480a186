"""`Dataset`: items, users' chronological interaction sequences and reviews, in memory and on disk.

On disk a dataset is a folder of Parquet files (`items.parquet`, `interactions.parquet`,
`reviews.parquet`) plus `manifest.json` (source, filters, counts, format version). The folder is
written under a temporary name and renamed into place, so an interrupted save never leaves a
folder that later loads as if complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from instructrec.atomic import atomic_folder
from instructrec.data.tables import (  # noqa: F401 - schemas and cleaning stay importable from here
    INTERACTION_SCHEMA,
    ITEM_SCHEMA,
    REVIEW_SCHEMA,
    SCHEMAS,
    clean_long_column,
    clean_long_text,
    clean_text,
    conform,
    normalise,
    to_table,
)
from instructrec.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
        items = conform(items, ITEM_SCHEMA, ["item_id"], "items")
        inter = conform(interactions, INTERACTION_SCHEMA, ["user_id", "item_id"], "interactions")
        revs = conform(reviews if reviews is not None else pd.DataFrame(columns=REVIEW_SCHEMA.names),
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
            revs["text"] = clean_long_column(revs["text"])
            revs["summary"] = clean_long_column(revs["summary"])
        items, inter, revs = (normalise(f, schema) for f, schema in zip((items, inter, revs), SCHEMAS))
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
        if path.exists() and not (path / MANIFEST).exists() and any(path.iterdir()):
            raise DataError(f"{path} exists and is not a dataset folder; choose another --out.")
        with atomic_folder(path) as tmp:
            for name, frame, schema in (
                ("items", self.items, ITEM_SCHEMA),
                ("interactions", self.interactions, INTERACTION_SCHEMA),
                ("reviews", self.reviews, REVIEW_SCHEMA),
            ):
                pq.write_table(to_table(frame, schema), tmp / f"{name}.parquet")
            self.manifest.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            (tmp / MANIFEST).write_text(json.dumps(asdict(self.manifest), indent=2) + "\n")
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
        items, inter, revs = (normalise(t, schema) for t, schema in zip(frames, SCHEMAS))
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
