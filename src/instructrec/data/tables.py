"""The tables of a dataset: Arrow schemas, text cleaning, and pandas <-> Arrow conversion.

Kept apart from `Dataset` because these run on every row of every table (millions of reviews):
each helper here is written for that scale (see `benchmarks/RESULTS.md`, Data).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from instructrec.errors import DataError

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


def clean_long_column(values: pd.Series) -> pd.Series:
    """`clean_long_text` over a column; texts that need nothing skip the function call."""
    return pd.Series(
        [v if type(v) is str and v and "&" not in v and "\n" not in v and "\t" not in v and "\r" not in v
         and "\xa0" not in v and not v[0].isspace() and not v[-1].isspace() else clean_long_text(v)
         for v in values],
        dtype=object,
    )


def conform(frame: pd.DataFrame, schema: pa.Schema, required: Sequence[str], what: str) -> pd.DataFrame:
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


def normalise(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
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
