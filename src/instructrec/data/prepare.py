"""`prepare`: one entry point from a named source format to a saved `Dataset` folder."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from instructrec.data.dataset import MANIFEST, Dataset
from instructrec.data.lines import OnError
from instructrec.errors import DataError


class Source(str, Enum):
    """Input formats `instructrec data prepare` reads."""

    recbole = "recbole"
    movielens = "movielens"
    amazon2018 = "amazon2018"
    amazon2023 = "amazon2023"


DEFAULT_K_CORE = {Source.recbole: 0, Source.movielens: 0, Source.amazon2018: 5, Source.amazon2023: 5}
"""k-core threshold when none is given: the paper's 5-core for raw Amazon reviews, none for the
already filtered RecBole/MovieLens data (and none for the Amazon 2023 sample format)."""


def load_source(
    source: Source,
    path: Path | None,
    *,
    min_user: int | None = None,
    min_item: int | None = None,
    meta: Path | None = None,
    on_error: OnError = OnError.fail,
    dedup: bool = True,
    drop_untitled: bool = True,
) -> Dataset:
    """Read `path` in the `source` format into a `Dataset`.

    Args:
        source: input format.
        path: input file or folder (MovieLens: optional; without it the embedded MovieLens-100K).
        min_user, min_item: k-core thresholds; None = the source's default (`DEFAULT_K_CORE`).
        meta: Amazon metadata file when it is not next to the reviews under its usual name.
        on_error: malformed lines in line-oriented files: `fail`, or `skip` and count them.
        dedup: Amazon sources: keep each (user, item) pair's first review only.
        drop_untitled: Amazon sources: drop interactions on items without a title.
    """
    source = Source(source)
    if path is not None and not Path(path).exists():
        raise DataError(f"--path {path} does not exist.")
    if source is Source.movielens:
        from instructrec.data.loaders.movielens import load_grouplens, load_movielens_100k

        k_user, k_item = min_user or 0, min_item or 0
        if path is None:
            return load_movielens_100k(min_user=k_user, min_item=k_item)
        return load_grouplens(path, min_user=k_user, min_item=k_item)
    if path is None:
        raise DataError(f"--path is required for source {source.value!r}.")
    if source is Source.recbole:
        from instructrec.data.loaders.recbole_atomic import load_recbole

        return load_recbole(path, min_user=min_user or 0, min_item=min_item or 0, on_error=on_error)

    from instructrec.data.loaders.amazon_common import ReviewFilters

    def filters(default: int) -> ReviewFilters:
        return ReviewFilters(min_user=default if min_user is None else min_user,
                             min_item=default if min_item is None else min_item,
                             dedup=dedup, drop_untitled=drop_untitled)

    if source is Source.amazon2018:
        from instructrec.data.loaders.amazon2018 import load_amazon2018

        return load_amazon2018(path, meta=meta, settings=filters(DEFAULT_K_CORE[source]), on_error=on_error)
    from instructrec.data.loaders.amazon2023 import is_sample_folder, load_amazon2023

    default = 0 if is_sample_folder(Path(path)) else DEFAULT_K_CORE[source]
    return load_amazon2023(path, meta=meta, settings=filters(default), on_error=on_error)


def prepare(
    source: Source,
    path: Path | None,
    out: Path,
    *,
    min_user: int | None = None,
    min_item: int | None = None,
    meta: Path | None = None,
    on_error: OnError = OnError.fail,
    dedup: bool = True,
    drop_untitled: bool = True,
) -> Dataset:
    """Load (arguments as in `load_source`) and save atomically to `out`; returns the dataset.

    Nothing is written until the whole input has been read and checked, and the folder is then
    written under a temporary name and renamed, so a failed or interrupted prepare leaves any
    earlier dataset at `out` untouched.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (not (out / MANIFEST).exists() and any(out.iterdir()))):
        raise DataError(f"--out {out} exists and is not a dataset folder; choose another --out.")
    dataset = load_source(source, path, min_user=min_user, min_item=min_item, meta=meta,
                          on_error=on_error, dedup=dedup, drop_untitled=drop_untitled)
    dataset.save(out)
    return dataset
