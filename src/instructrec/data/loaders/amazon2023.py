"""Amazon Reviews 2023 (Hou et al. 2024): raw review/meta JSONL, and the per-user sample format.

Raw files, per category, plain or gzip JSON lines:
- reviews `<Category>.jsonl[.gz]`: user_id, parent_asin (the item), rating, title (-> summary),
  text, timestamp (Unix milliseconds).
- metadata `meta_<Category>.jsonl[.gz]`: parent_asin, title, description (list of paragraphs),
  categories (list), main_category, store (-> brand), price (number, or a string such as "None").

Sample format (`../shared/data/amazon-reviews-2023-sample`): a folder with training.jsonl,
validation.jsonl and test.jsonl; one user-category per line: user_id, category, history (reviews,
oldest first) and heldout (the most recent review); each review has parent_asin, rating,
timestamp_ms, review_title, review_full, review_excerpt and product {title, brand, price,
main_category}. All three files load into one Dataset (the splits there are by user, not by
time; `leave_one_out` then splits each user's merged sequence). A user listed under several
categories gets one merged chronological sequence. Items barely repeat across users in the
sample, so its default is no k-core.

Timestamps are stored in Unix seconds like every other source; rows are ordered by the exact
milliseconds first, so same-second reviews keep their true order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from instructrec.data.dataset import Dataset, sort_interactions
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

SAMPLE_FILES = ("training.jsonl", "validation.jsonl", "test.jsonl")
SAMPLE_FILTERS = ReviewFilters(min_user=0, min_item=0)
"""Defaults for the sample format: no k-core (items barely repeat), de-duplicated."""
_REVIEW_NAME = re.compile(r"^(?P<cat>.+?)\.jsonl(?:\.gz)?$")


def is_sample_folder(path: Path) -> bool:
    return path.is_dir() and all((path / name).exists() for name in SAMPLE_FILES)


def _ms_to_seconds(reviews: pd.DataFrame) -> pd.DataFrame:
    """Order by the exact milliseconds, then store seconds (stable sort keeps that order)."""
    reviews = sort_interactions(reviews)
    reviews["timestamp"] = reviews["timestamp"] // 1000
    return reviews


# -- raw review + meta JSONL --------------------------------------------------------------------
def find_files(path: Path, meta: Path | None = None) -> tuple[Path, Path | None]:
    """The review JSONL and its `meta_` JSONL from a review file or a folder holding both."""
    if not path.exists():
        raise DataError(f"{path} does not exist; give a `<Category>.jsonl[.gz]` file or its folder.")
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.jsonl*") if not p.name.startswith("meta_")
                            and _REVIEW_NAME.match(p.name))
        if len(candidates) != 1:
            raise DataError(f"{path} must hold exactly one review file `<Category>.jsonl[.gz]` "
                            f"(found {[p.name for p in candidates]}); give one with --path.")
        path = candidates[0]
    if meta is None:
        match = _REVIEW_NAME.match(path.name)
        cat = match["cat"] if match else path.stem
        meta = next((path.parent / n for n in (f"meta_{cat}.jsonl", f"meta_{cat}.jsonl.gz")
                     if (path.parent / n).exists()), None)
        if meta is None:
            log.warning("no meta_%s.jsonl[.gz] next to %s", cat, path)
    elif not meta.exists():
        raise DataError(f"metadata file {meta} does not exist.")
    return path, meta


def read_reviews(path: Path, errors: LineErrors) -> pd.DataFrame:
    """Review JSONL -> (user_id, item_id, rating, timestamp in ms, text, summary); plain lists for speed."""
    users: list = []
    items: list = []
    ratings: list = []
    times: list = []
    texts: list = []
    summaries: list = []
    for _, batch in read_record_batches(path, errors, ("user_id", "parent_asin"), desc=f"reviews {path.name}"):
        users += [r["user_id"] for r in batch]
        items += [r["parent_asin"] for r in batch]
        ratings += [r.get("rating") for r in batch]
        times += [r.get("timestamp") for r in batch]
        texts += [r.get("text") for r in batch]
        summaries += [r.get("title") for r in batch]
    return reviews_frame(users, items, ratings, times, texts, summaries)


def read_meta(path: Path, errors: LineErrors, wanted: set[str] | None = None) -> pd.DataFrame:
    records = []
    for _, r in read_records(path, errors, ("parent_asin",), desc=f"meta {path.name}"):
        asin = str(r["parent_asin"])
        if wanted is not None and asin not in wanted:
            continue
        records.append(
            {
                "item_id": asin,
                "title": strip_tags(r.get("title")),
                "description": join_text(r.get("description")),
                "categories": flatten_categories(r.get("categories"), r.get("main_category")),
                "brand": strip_tags(r.get("store")),
                "price": parse_price(r.get("price")),
            }
        )
    return items_frame(records)


def load_amazon2023(
    path: str | Path,
    *,
    meta: str | Path | None = None,
    settings: ReviewFilters | None = None,
    on_error: OnError | str = OnError.fail,
) -> Dataset:
    """Load Amazon Reviews 2023: raw review (+ meta) JSONL, or a sample-format folder.

    Args:
        path: a review `<Category>.jsonl[.gz]`, a folder holding it and its `meta_` file, or a
            folder in the sample format (training/validation/test.jsonl).
        meta: the metadata file when not next to the reviews under its usual name (raw form only).
        settings: k-core etc.; default 5-core for raw files and none for the sample format.
        on_error: `fail` at the first malformed line, or `skip` malformed lines and count them.
    """
    path = Path(path)
    errors = LineErrors(OnError(on_error))
    if is_sample_folder(path):
        return load_sample(path, settings=settings, errors=errors)
    review_path, meta_path = find_files(path, Path(meta) if meta is not None else None)
    reviews = _ms_to_seconds(read_reviews(review_path, errors))
    items = read_meta(meta_path, errors, set(reviews["item_id"])) if meta_path is not None else None
    source = f"amazon2023:{review_path}" + (f"+{meta_path}" if meta_path is not None else "")
    return build_dataset(reviews, items, settings or ReviewFilters(), errors, source=source)


# -- sample format ------------------------------------------------------------------------------
def load_sample(folder: Path, *, settings: ReviewFilters | None = None,
                errors: LineErrors | None = None) -> Dataset:
    """training/validation/test.jsonl -> one Dataset with items, interactions and reviews."""
    errors = errors or LineErrors()
    users: list = []
    items: list = []
    ratings: list = []
    times: list = []
    texts: list = []
    summaries: list = []
    products: dict[str, dict] = {}
    rows = 0
    for name in SAMPLE_FILES:
        path = folder / name
        for lineno, rec in read_records(path, errors, ("user_id", "history", "heldout"), desc=name):
            reviews = [*rec["history"], rec["heldout"]] if isinstance(rec["history"], list) else None
            if reviews is None or not all(isinstance(r, dict) and r.get("parent_asin") for r in reviews):
                errors.bad_line(path, lineno, f"user {rec['user_id']!r}: history/heldout reviews need a parent_asin")
                continue
            rows += 1
            for review in reviews:
                asin = str(review["parent_asin"])
                users.append(rec["user_id"])
                items.append(asin)
                ratings.append(review.get("rating"))
                times.append(review.get("timestamp_ms"))
                texts.append(review.get("review_full") or review.get("review_excerpt"))
                summaries.append(review.get("review_title"))
                if asin not in products:
                    products[asin] = _product(asin, review.get("product") or {}, rec.get("category"))
    reviews_df = _ms_to_seconds(reviews_frame(users, items, ratings, times, texts, summaries))
    return build_dataset(reviews_df, items_frame(products.values()), settings or SAMPLE_FILTERS, errors,
                         source=f"amazon2023-sample:{folder}", extra_filters={"sample_rows": rows})


def _product(asin: str, product: dict, category: object) -> dict:
    main = product.get("main_category")
    return {
        "item_id": asin,
        "title": strip_tags(product.get("title")),
        "description": None,
        "categories": flatten_categories(main if main else (str(category).replace("_", " ") if category else None)),
        "brand": strip_tags(product.get("brand")),
        "price": parse_price(product.get("price")),
    }
