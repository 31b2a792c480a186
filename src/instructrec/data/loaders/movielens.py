"""MovieLens-100K, the embedded default data, read from the installed `recbole` wheel.

The GroupLens licence forbids redistributing MovieLens, so we depend on the `recbole==1.2.1`
wheel (installed with --no-deps) and locate its example files through package metadata,
without importing `recbole` (which would pull in its heavy dependencies).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from instructrec.data.dataset import Dataset
from instructrec.data.loaders.recbole_atomic import load_recbole
from instructrec.errors import DataError

ML100K_IN_WHEEL = "recbole/dataset_example/ml-100k"


def movielens_100k_folder() -> Path:
    """Folder of `ml-100k.inter`/`ml-100k.item` inside the installed recbole wheel."""
    try:
        dist = importlib.metadata.distribution("recbole")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            "MovieLens-100K comes from the recbole wheel, which is not installed: "
            "run `pip install --no-deps recbole==1.2.1` (make setup does this)."
        ) from None
    folder = Path(str(dist.locate_file(ML100K_IN_WHEEL)))
    if not (folder / "ml-100k.inter").exists():
        raise DataError(f"the recbole wheel has no {ML100K_IN_WHEEL}/ml-100k.inter; reinstall recbole==1.2.1.")
    return folder


def load_movielens_100k(min_user: int = 0, min_item: int = 0) -> Dataset:
    """MovieLens-100K: 943 users, 1,682 items, 100,000 ratings (every rating is an interaction)."""
    return load_recbole(movielens_100k_folder(), min_user=min_user, min_item=min_item, source_name="movielens")
