"""RecBole atomic files: `.inter` + `.item`, in the plain or the sequential form.

Atomic files are tab-separated with a `name:type` header (e.g. `item_id:token`). The plain form
has one interaction per `.inter` row (user_id, item_id, rating, timestamp). The sequential form
(used by the Games data of the paper, `../shared/data/amazon-games`) has `<name>.test.inter` and
`<name>.valid.inter` whose rows are (user_id, item_id_list, item_id): the whole ordered history
and the target. We read them with the csv module rather than pandas because token_seq fields
contain spaces and titles contain quotes that pandas' C parser would misread without
`quoting=QUOTE_NONE`, and we want line numbers in error messages.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from instructrec.data.dataset import Dataset
from instructrec.data.lines import LineErrors, OnError
from instructrec.data.preprocess import deduplicate, k_core
from instructrec.errors import DataError

log = logging.getLogger(__name__)

csv.field_size_limit(1 << 26)


def read_atomic(path: Path, errors: LineErrors | None = None) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header field names (types stripped) and an iterator of (line number, fields).

    A row with the wrong number of fields goes to `errors` (default: fail with file:line)."""
    errors = errors or LineErrors()
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    try:
        handle = path.open(encoding="utf-8", newline="")
        header_line = handle.readline()
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it (e.g. iconv -t utf-8).") from None
    if not header_line.strip():
        handle.close()
        raise DataError(f"{path} is empty: an atomic file starts with a `name:type` header line.")
    names = [h.split(":", 1)[0].strip() for h in header_line.rstrip("\r\n").split("\t")]

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                for lineno, fields in enumerate(reader, start=2):
                    if fields:
                        if len(fields) != len(names):
                            errors.bad_line(path, lineno, f"expected {len(names)} tab-separated fields "
                                                          f"({', '.join(names)}), found {len(fields)}")
                            continue
                        yield lineno, fields
            except UnicodeDecodeError:
                raise DataError(f"{path} is not UTF-8 text; convert it (e.g. iconv -t utf-8).") from None

    return names, rows()


def _find(folder: Path, suffix: str) -> Path | None:
    found = sorted(folder.glob(f"*{suffix}"))
    return found[0] if found else None


def read_items(path: Path, errors: LineErrors | None = None) -> pd.DataFrame:
    """`.item` file -> item frame (title from `title` or `movie_title`; categories from `class`)."""
    names, rows = read_atomic(path, errors)
    if "item_id" not in names:
        raise DataError(f"{path}: no item_id column in header {names}.")
    title_col = next((c for c in ("title", "movie_title", "name") if c in names), None)
    cat_col = next((c for c in ("class", "categories", "genre", "category") if c in names), None)
    records = []
    for _, f in rows:
        rec = dict(zip(names, f))
        records.append(
            {
                "item_id": rec["item_id"],
                "title": rec.get(title_col) if title_col else None,
                "categories": rec[cat_col].split() if cat_col and rec.get(cat_col) else [],
                "year": rec.get("release_year") or rec.get("year") or None,
                "brand": rec.get("brand") or None,
                "price": rec.get("price") or None,
                "description": rec.get("description") or None,
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["item_id", "title", "categories", "year", "brand", "price", "description"]
    )


def load_recbole(
    folder: str | Path,
    *,
    min_user: int = 0,
    min_item: int = 0,
    dedup: bool | None = None,
    source_name: str = "recbole",
    on_error: OnError | str = OnError.fail,
) -> Dataset:
    """Load a RecBole atomic dataset folder (plain or sequential form).

    Args:
        folder: folder with `<name>.item` and either `<name>.inter` or `<name>.test.inter`.
        min_user, min_item: k-core thresholds (0 = no filtering); iterated to a fixed point.
        dedup: collapse repeated (user, item) pairs; default True for the plain form and False
            for the sequential form, whose sequences are already the ground truth of the split.
        on_error: rows with the wrong number of fields: `fail` (with file:line) or `skip` them.
    """
    errors = LineErrors(OnError(on_error))
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; give the folder that holds the .inter/.item files.")
    item_path = _find(folder, ".item")
    test_path = _find(folder, ".test.inter")
    plain_path = next((p for p in sorted(folder.glob("*.inter")) if not p.name.endswith((".test.inter",
                      ".valid.inter", ".train.inter"))), None)
    if item_path is None:
        raise DataError(f"{folder} has no .item file; RecBole datasets need one for titles.")
    items = read_items(item_path, errors)
    if test_path is not None:
        inter = _read_sequential(test_path, _find(folder, ".valid.inter"), errors)
        form = "sequential"
    elif plain_path is not None:
        inter = _read_plain(plain_path, errors)
        form = "plain"
    else:
        raise DataError(f"{folder} has neither <name>.inter nor <name>.test.inter.")
    filters: dict[str, object] = {"form": form}
    if dedup if dedup is not None else form == "plain":
        inter = deduplicate(inter)
        filters["dedup"] = "first (user, item)"
    if min_user > 1 or min_item > 1:
        inter = k_core(inter, min_user, min_item)
        filters["k_core"] = {"min_user": min_user, "min_item": min_item}
        items = items[items["item_id"].isin(set(inter["item_id"]))]
    filters["lines"] = errors.as_filter()
    return Dataset.from_frames(items, inter, source=f"{source_name}:{folder}", filters=filters)


def _read_plain(path: Path, errors: LineErrors) -> pd.DataFrame:
    names, rows = read_atomic(path, errors)
    missing = [c for c in ("user_id", "item_id") if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} in header {names}.")
    data = [f for _, f in rows]
    frame = pd.DataFrame(data, columns=names) if data else pd.DataFrame(columns=names)
    if not len(frame):
        raise DataError(f"{path} has a header but no interactions.")
    out = frame[["user_id", "item_id"]].copy()
    out["rating"] = pd.to_numeric(frame["rating"], errors="coerce") if "rating" in names else np.nan
    out["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce") if "timestamp" in names else np.nan
    return out


def _read_sequential(test_path: Path, valid_path: Path | None, errors: LineErrors) -> pd.DataFrame:
    names, rows = read_atomic(test_path, errors)
    need = ("user_id", "item_id_list", "item_id")
    if any(c not in names for c in need):
        raise DataError(f"{test_path}: sequential atomic files need columns {need}; header is {names}.")
    ui, li, ti = (names.index(c) for c in need)
    users: list[str] = []
    seqs: list[list[str]] = []
    for lineno, f in rows:
        hist = f[li].split()
        if not hist:
            raise DataError(f"{test_path}:{lineno}: empty item_id_list for user {f[ui]!r}.")
        users.append(f[ui])
        seqs.append([*hist, f[ti]])
    if not users:
        raise DataError(f"{test_path} has a header but no rows.")
    if valid_path is not None:
        _check_valid(valid_path, dict(zip(users, seqs)), errors)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    return pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(users, dtype=object), lengths),
            "item_id": np.fromiter((i for s in seqs for i in s), dtype=object, count=int(lengths.sum())),
        }
    )


def _check_valid(valid_path: Path, full: dict[str, list[str]], errors: LineErrors) -> None:
    """Every validation target must be the second-to-last item of the test sequence."""
    names, rows = read_atomic(valid_path, errors)
    ui, ti = names.index("user_id"), names.index("item_id")
    for lineno, f in rows:
        seq = full.get(f[ui])
        if seq is None:
            raise DataError(f"{valid_path}:{lineno}: user {f[ui]!r} is not in the test file.")
        if len(seq) < 2 or seq[-2] != f[ti]:
            raise DataError(
                f"{valid_path}:{lineno}: validation target {f[ti]!r} of user {f[ui]!r} is not the "
                "second-to-last item of the test sequence; the two files disagree."
            )
