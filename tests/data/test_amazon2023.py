"""Amazon Reviews 2023: raw review/meta JSONL and the per-user sample format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_formats import write_lines

from instructrec.data import leave_one_out
from instructrec.data.loaders.amazon2023 import SAMPLE_FILES, load_amazon2023
from instructrec.data.loaders.amazon_common import ReviewFilters
from instructrec.errors import DataError

SAMPLE_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "amazon-reviews-2023-sample"
NO_K_CORE = ReviewFilters(min_user=0, min_item=0)


def review2023(user, item, ts_ms, rating=4.0, text="good", title="fine"):
    return {"rating": rating, "title": title, "text": text, "images": [], "asin": item + "x",
            "parent_asin": item, "user_id": user, "timestamp": ts_ms, "helpful_vote": 0, "verified_purchase": True}


def meta2023(item, title, price=9.99, **extra):
    record = {"main_category": "Video Games", "title": title, "average_rating": 4.1, "rating_number": 10,
              "features": [], "description": ["First &amp; best.", "Second."], "price": price, "images": [],
              "videos": [], "store": "Nintendo", "categories": ["Video Games", "Switch", "Games"],
              "details": {}, "parent_asin": item, "bought_together": None}
    record.update(extra)
    return record


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_raw_jsonl(tmp_path, suffix):
    reviews = [review2023(f"U{u}", f"P{i}", 1_600_000_000_000 + 1000 * (6 * u + i)) for u in range(6) for i in range(6)]
    write_lines(tmp_path / f"Video_Games.jsonl{suffix}", (json.dumps(r) for r in reversed(reviews)))
    metas = [meta2023(f"P{i}", f"Game {i}", price=None if i == 0 else "None" if i == 1 else 20.0 + i) for i in range(6)]
    metas[2]["categories"] = []
    write_lines(tmp_path / f"meta_Video_Games.jsonl{suffix}", (json.dumps(m) for m in metas))
    ds = load_amazon2023(tmp_path)
    assert (ds.n_users, ds.n_items, ds.n_interactions, len(ds.reviews)) == (6, 6, 36, 36)
    assert ds.manifest.filters["k_core"] == {"min_user": 5, "min_item": 5}
    # reversed input: sequences must come back in time order, timestamps in seconds
    assert list(ds.item_ids[ds.sequences[ds.user_index("U0")]]) == [f"P{i}" for i in range(6)]
    assert ds.interactions["timestamp"].min() == 1_600_000_000
    p3 = ds.items.iloc[ds.item_index("P3")]
    assert (p3["title"], p3["brand"], p3["price"]) == ("Game 3", "Nintendo", 23.0)
    assert p3["description"] == "First & best. Second."
    assert p3["categories"] == ["Video Games", "Switch", "Games"]
    assert ds.items.iloc[ds.item_index("P2")]["categories"] == ["Video Games"]  # main_category fills in
    assert pd.isna(ds.items.iloc[ds.item_index("P1")]["price"]) and pd.isna(ds.items.iloc[ds.item_index("P0")]["price"])
    first = ds.reviews[(ds.reviews["user_id"] == "U0") & (ds.reviews["item_id"] == "P0")].iloc[0]
    assert (first["text"], first["summary"], first["rating"]) == ("good", "fine", 4.0)


def test_same_second_reviews_keep_millisecond_order(tmp_path):
    reviews = [review2023("U", "B", 1_600_000_000_900), review2023("U", "A", 1_600_000_000_100),
               review2023("U", "C", 1_600_000_001_000)]
    write_lines(tmp_path / "Toys.jsonl", (json.dumps(r) for r in reviews))
    write_lines(tmp_path / "meta_Toys.jsonl", (json.dumps(meta2023(i, i)) for i in "ABC"))
    ds = load_amazon2023(tmp_path / "Toys.jsonl", settings=NO_K_CORE)
    assert list(ds.item_ids[ds.sequences[0]]) == ["A", "B", "C"]


def test_missing_required_field(tmp_path):
    write_lines(tmp_path / "Toys.jsonl", [json.dumps({"user_id": "U", "rating": 5})])
    with pytest.raises(DataError, match=r"Toys\.jsonl:1: missing required field\(s\) \['parent_asin'\]"):
        load_amazon2023(tmp_path / "Toys.jsonl", settings=NO_K_CORE)


def _sample_row(user, category, items, start_ms):
    reviews = [{"parent_asin": item, "rating": 5.0, "timestamp_ms": start_ms + k * 1000,
                "review_excerpt": "short", "review_full": f"full review of {item}", "review_title": f"about {item}",
                "product": {"title": f"Product {item} &amp; co", "brand": None, "price": "$3.50" if k else None,
                            "main_category": "All Beauty" if category == "All_Beauty" else None}}
               for k, item in enumerate(items)]
    return {"user_id": user, "category": category, "history": reviews[:-1], "heldout": reviews[-1]}


def _write_sample(folder: Path, rows_per_file):
    folder.mkdir()
    for name, rows in zip(SAMPLE_FILES, rows_per_file):
        write_lines(folder / name, (json.dumps(r) for r in rows))
    return folder


def test_sample_format_merges_files_and_categories(tmp_path):
    folder = _write_sample(tmp_path / "sample", [
        [_sample_row("U1", "All_Beauty", ["A1", "A2", "A3", "A4", "A5"], 1_000_000_000_000),
         _sample_row("U2", "All_Beauty", ["A1", "B2", "B3", "B4", "B5"], 1_000_000_000_000)],
        [_sample_row("U1", "Toys_and_Games", ["T1", "T2", "T3", "T4", "T5"], 2_000_000_000_000)],
        [_sample_row("U3", "Toys_and_Games", ["T1", "C2", "C3", "C4", "C5"], 1_500_000_000_000)],
    ])
    ds = load_amazon2023(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions, len(ds.reviews)) == (3, 18, 20, 20)
    assert "k_core" not in ds.manifest.filters and ds.manifest.filters["sample_rows"] == 4
    u1 = ds.item_ids[ds.sequences[ds.user_index("U1")]]
    assert list(u1) == ["A1", "A2", "A3", "A4", "A5", "T1", "T2", "T3", "T4", "T5"]  # one chronological sequence
    a1 = ds.items.iloc[ds.item_index("A1")]
    assert a1["title"] == "Product A1 & co" and a1["categories"] == ["All Beauty"]
    assert ds.items.iloc[ds.item_index("T2")]["categories"] == ["Toys and Games"]  # from the row's category
    assert ds.items.iloc[ds.item_index("A2")]["price"] == pytest.approx(3.5)
    review = ds.reviews[(ds.reviews["user_id"] == "U3") & (ds.reviews["item_id"] == "C5")].iloc[0]
    assert (review["text"], review["summary"]) == ("full review of C5", "about C5")


def test_sample_row_with_bad_history(tmp_path):
    bad = _sample_row("U9", "All_Beauty", ["X1", "X2"], 1_000_000_000_000)
    bad["history"][0].pop("parent_asin")
    good = _sample_row("U1", "All_Beauty", ["A1", "A2"], 1_000_000_000_000)
    folder = _write_sample(tmp_path / "sample", [[good, bad], [good], [good]])
    with pytest.raises(DataError, match=r"training\.jsonl:2: user 'U9'"):
        load_amazon2023(folder)
    ds = load_amazon2023(folder, on_error="skip")
    assert set(ds.user_ids) == {"U1"}
    assert ds.manifest.filters["lines"]["skipped_lines"] == {"training.jsonl": 1}


@pytest.fixture(scope="module")
def real_sample():
    if not (SAMPLE_DIR / "training.jsonl").exists():
        pytest.skip(f"Amazon 2023 sample not found at {SAMPLE_DIR}")
    return load_amazon2023(SAMPLE_DIR)


def test_real_sample_folder(real_sample):
    ds = real_sample
    rows = [json.loads(line) for name in SAMPLE_FILES for line in (SAMPLE_DIR / name).open()]
    assert ds.manifest.filters["sample_rows"] == len(rows) == 691
    untitled = {r["parent_asin"] for row in rows for r in [*row["history"], row["heldout"]]
                if not (r["product"]["title"] or "").strip()}
    want_pairs = {(row["user_id"], r["parent_asin"]) for row in rows for r in [*row["history"], row["heldout"]]
                  if r["parent_asin"] not in untitled}
    got_pairs = set(zip(ds.interactions["user_id"], ds.interactions["item_id"]))
    assert got_pairs == want_pairs
    assert len(ds.reviews) == ds.n_interactions == len(want_pairs)
    blank = {(row["user_id"], r["parent_asin"]) for row in rows for r in [*row["history"], row["heldout"]]
             if not (r["review_full"] or r["review_excerpt"] or "").strip()} & want_pairs
    no_text = ds.reviews[ds.reviews["text"].isna()]
    assert set(zip(no_text["user_id"], no_text["item_id"])) == blank  # only really empty reviews lack text
    assert (ds.items["title"] != ds.items["item_id"]).all()
    # every user's heldout review is in their sequence; sequences are in time order
    for row in rows[:50]:
        if row["heldout"]["parent_asin"] not in untitled:
            seq = ds.item_ids[ds.sequences[ds.user_index(row["user_id"])]]
            assert row["heldout"]["parent_asin"] in set(seq)
    ts = ds.interactions["timestamp"].to_numpy(dtype=np.int64)
    users = ds.user_index_array
    assert np.all((np.diff(ts) >= 0) | (np.diff(users) != 0))
    assert len(leave_one_out(ds)) > 300
