"""Amazon Review Data 2018 (Ni, Li, McAuley 2019) and the older 2014 dumps (McAuley et al.).

Files, per category (e.g. Video_Games), gzip, one record per line:
- reviews `<Category>_5.json.gz` (2018, JSON; 2014: `reviews_<Category>_5.json.gz`): reviewerID,
  asin, overall (rating), reviewText, summary, unixReviewTime (Unix seconds).
- metadata `meta_<Category>.json.gz`: asin, title, description (string or list), category (list;
  2014: `categories`, a list of lists), brand, price (e.g. "$12.99"). The 2014 metadata lines are
  Python literals (`str(dict)`), parsed with `ast.literal_eval`, never `eval`.

Items without metadata or without a title: their interactions are dropped before k-core unless
`drop_untitled=False` (then they stay, titled by their asin). Metadata items nobody reviewed are
not part of the dataset. HTML tags are stripped from metadata text; entities are unescaped by
`Dataset.from_frames`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from instructrec.data.dataset import Dataset
from instructrec.data.lines import LineErrors, OnError, read_record_batches, read_records
from instructrec.data.loaders.amazon_common import (
    ReviewFilters,
    build_dataset,
    flatten_categories,
    items_frame,
    join_text,
    parse_price,
    reviews_frame,
    strip_tags,
)
from instructrec.errors import DataError

log = logging.getLogger(__name__)

REVIEW_FIELDS = ("reviewerID", "asin")
META_FIELDS = ("asin",)
_REVIEW_NAME = re.compile(r"^(?:reviews_)?(?P<cat>.+?)(?:_5)?\.json(?:\.gz)?$")


def find_files(path: Path, meta: Path | None = None) -> tuple[Path, Path | None]:
    """The review file and its metadata file from a review file or a folder holding both."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; give a `<Category>_5.json.gz` file or its folder.")
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.json*") if not p.name.startswith("meta_")
                            and _REVIEW_NAME.match(p.name))
        if not candidates:
            raise DataError(f"{path} holds no review file (`<Category>_5.json.gz` or `reviews_<Category>_5.json.gz`).")
        if len(candidates) > 1:
            raise DataError(f"{path} holds several review files ({', '.join(p.name for p in candidates)}); "
                            "give one with --path.")
        reviews = candidates[0]
    else:
        reviews = path
    if meta is None:
        match = _REVIEW_NAME.match(reviews.name)
        if match:
            for name in (f"meta_{match['cat']}.json.gz", f"meta_{match['cat']}.json"):
                if (reviews.parent / name).exists():
                    meta = reviews.parent / name
                    break
        if meta is None:
            log.warning("no meta_<Category>.json.gz next to %s", reviews)
    elif not Path(meta).exists():
        raise DataError(f"metadata file {meta} does not exist.")
    return reviews, meta


def read_reviews(path: Path, errors: LineErrors) -> pd.DataFrame:
    """Review lines -> (user_id, item_id, rating, timestamp, text, summary).

    Columns are collected in plain lists (no per-row pandas work): this is the loop that has to
    handle millions of lines.
    """
    users: list = []
    items: list = []
    ratings: list = []
    times: list = []
    texts: list = []
    summaries: list = []
    for _, batch in read_record_batches(path, errors, REVIEW_FIELDS, desc=f"reviews {path.name}"):
        users += [r["reviewerID"] for r in batch]
        items += [r["asin"] for r in batch]
        ratings += [r.get("overall") for r in batch]
        times += [r.get("unixReviewTime") for r in batch]
        texts += [r.get("reviewText") for r in batch]
        summaries += [r.get("summary") for r in batch]
    return reviews_frame(users, items, ratings, times, texts, summaries)


def read_meta(path: Path, errors: LineErrors, wanted: set[str] | None = None) -> pd.DataFrame:
    """Metadata lines -> item frame, keeping only `wanted` asins when given (first line wins)."""
    records = []
    for _, r in read_records(path, errors, META_FIELDS, desc=f"meta {path.name}"):
        asin = str(r["asin"])
        if wanted is not None and asin not in wanted:
            continue
        records.append(
            {
                "item_id": asin,
                "title": strip_tags(r.get("title")),
                "description": join_text(r.get("description")),
                "categories": flatten_categories(r.get("category", r.get("categories"))),
                "brand": strip_tags(r.get("brand")),
                "price": parse_price(r.get("price")),
            }
        )
    return items_frame(records)


def load_amazon2018(
    path: str | Path,
    *,
    meta: str | Path | None = None,
    settings: ReviewFilters | None = None,
    on_error: OnError | str = OnError.fail,
) -> Dataset:
    """Load an Amazon 2018 (or 2014) category: reviews -> interactions and reviews; meta -> items.

    Args:
        path: the review file or a folder holding it and `meta_<Category>.json.gz`.
        meta: the metadata file, when not next to the review file under its usual name.
        settings: k-core, de-duplication and untitled-item rules (default: 5-core, as the paper).
        on_error: `fail` at the first malformed line, or `skip` malformed lines and count them.
    """
    settings = settings or ReviewFilters()
    errors = LineErrors(OnError(on_error))
    review_path, meta_path = find_files(Path(path), Path(meta) if meta is not None else None)
    reviews = read_reviews(review_path, errors)
    items = read_meta(meta_path, errors, set(reviews["item_id"])) if meta_path is not None else None
    source = f"amazon2018:{review_path}" + (f"+{meta_path}" if meta_path is not None else "")
    return build_dataset(reviews, items, settings, errors, source=source)
