"""`prepare`: one entry point from a named source format to a saved `Dataset` folder."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from instructrec.data.dataset import Dataset
from instructrec.errors import DataError


class Source(str, Enum):
    """Input formats `instructrec data prepare` reads."""

    recbole = "recbole"
    movielens = "movielens"


def load_source(source: Source, path: Path | None, *, min_user: int = 0, min_item: int = 0) -> Dataset:
    """Read `path` in the `source` format into a `Dataset` (k-core thresholds 0 = none)."""
    if source is Source.movielens:
        from instructrec.data.loaders.movielens import load_movielens_100k

        return load_movielens_100k(min_user=min_user, min_item=min_item)
    if path is None:
        raise DataError(f"--path is required for source {source.value!r}.")
    if source is Source.recbole:
        from instructrec.data.loaders.recbole_atomic import load_recbole

        return load_recbole(path, min_user=min_user, min_item=min_item)
    raise DataError(f"unknown source {source!r}")  # pragma: no cover - Enum guards this


def prepare(source: Source, path: Path | None, out: Path, *, min_user: int = 0, min_item: int = 0) -> Dataset:
    """Load and save atomically to `out`; returns the dataset."""
    dataset = load_source(source, path, min_user=min_user, min_item=min_item)
    dataset.save(out)
    return dataset
