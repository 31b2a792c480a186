"""Amazon Review Data 2018 (and the 2014 dumps) on small files in the real formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_formats import grid_reviews, meta2018, review2018, write_lines

from instructrec.data.loaders.amazon2018 import find_files, load_amazon2018
from instructrec.data.loaders.amazon_common import ReviewFilters, parse_price
from instructrec.errors import DataError


def test_loads_five_core_with_items_and_reviews(amazon2018_dir):
    ds = load_amazon2018(amazon2018_dir)
    # the sparse user and the once-reviewed item fall to the default 5-core
    assert (ds.n_users, ds.n_items, ds.n_interactions, len(ds.reviews)) == (6, 6, 36, 36)
    assert "SPARSE" not in set(ds.user_ids) and "RARE" not in set(ds.item_ids)
    assert ds.manifest.filters["k_core"] == {"min_user": 5, "min_item": 5}
    item = ds.items.iloc[ds.item_index("I3")]
    assert item["title"] == "Toy 3 & Co '3' deluxe"  # entities unescaped, whitespace normalised
    assert item["description"] == "Line one. Line two ."  # list joined, tags stripped
    assert item["categories"] == ["Video Games", "PC"]
    assert item["brand"] == "Maker" and item["price"] == pytest.approx(12.99)
    review = ds.reviews.iloc[0]
    assert review["text"] == "fine" and review["summary"] == "ok" and review["rating"] == 5.0


def test_sequences_are_chronological(amazon2018_dir):
    ds = load_amazon2018(amazon2018_dir)
    for user in range(ds.n_users):
        rows = ds.interactions[ds.interactions["user_id"] == ds.user_ids[user]]
        assert np.all(np.diff(rows["timestamp"].to_numpy(dtype=np.int64)) >= 0)
        assert list(ds.item_ids[ds.sequences[user]]) == list(rows["item_id"])


def test_k_core_off_keeps_everything(amazon2018_dir):
    ds = load_amazon2018(amazon2018_dir, settings=ReviewFilters(min_user=0, min_item=0))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (7, 7, 38)


def test_untitled_items_dropped_or_kept(tmp_path):
    reviews = grid_reviews()
    write_lines(tmp_path / "Toys_5.json.gz", (json.dumps(r) for r in reviews))
    # I5 has no metadata at all, I4 has metadata without a title
    metas = [meta2018(f"I{i}", f"Toy {i}") for i in range(4)] + [meta2018("I4", None)]
    write_lines(tmp_path / "meta_Toys.json.gz", (json.dumps(m) for m in metas))
    off = ReviewFilters(min_user=0, min_item=0)
    dropped = load_amazon2018(tmp_path, settings=off)
    assert sorted(dropped.item_ids) == ["I0", "I1", "I2", "I3"]
    assert dropped.manifest.filters["drop_untitled"] == {"interactions_dropped": 12}
    kept = load_amazon2018(tmp_path, settings=ReviewFilters(min_user=0, min_item=0, drop_untitled=False))
    assert kept.n_items == 6
    assert kept.items.iloc[kept.item_index("I5")]["title"] == "I5"  # titled by its id
    assert kept.items.iloc[kept.item_index("I4")]["brand"] == "Maker"  # its metadata is kept
    assert kept.manifest.filters["untitled_items_kept"] == 2


def test_dedup_keeps_first_review_of_a_pair(tmp_path):
    reviews = grid_reviews()
    reviews.append(review2018("U0", "I1", 1_400_000_000, text="earliest"))  # a repeat, earlier
    write_lines(tmp_path / "Toys_5.json.gz", (json.dumps(r) for r in reviews))
    write_lines(tmp_path / "meta_Toys.json.gz", (json.dumps(meta2018(f"I{i}", f"T{i}")) for i in range(6)))
    ds = load_amazon2018(tmp_path)
    assert ds.n_interactions == 36
    u0 = ds.reviews[(ds.reviews["user_id"] == "U0") & (ds.reviews["item_id"] == "I1")]
    assert list(u0["text"]) == ["earliest"]
    assert ds.item_ids[ds.sequences[ds.user_index("U0")][0]] == "I1"
    no_dedup = load_amazon2018(tmp_path, settings=ReviewFilters(dedup=False))
    assert no_dedup.n_interactions == 37


def test_2014_dumps_with_python_literal_meta(tmp_path):
    """reviews_<Cat>_5.json.gz is JSON; meta_<Cat>.json.gz lines are str(dict) with `categories`."""
    write_lines(tmp_path / "reviews_Toys_5.json.gz", (json.dumps(r) for r in grid_reviews()))
    metas = [str({"asin": f"I{i}", "title": f"Old toy {i} &amp; more", "price": 3.5 + i,
                  "categories": [["Toys & Games", "Puzzles"], ["Toys & Games", "Kids"]],
                  "salesRank": {"Toys": 10}, "imUrl": "http://x"}) for i in range(6)]
    write_lines(tmp_path / "meta_Toys.json.gz", metas)
    ds = load_amazon2018(tmp_path)
    assert (ds.n_users, ds.n_items) == (6, 6)
    item = ds.items.iloc[ds.item_index("I2")]
    assert item["title"] == "Old toy 2 & more"
    assert item["categories"] == ["Toys & Games", "Puzzles", "Kids"]
    assert item["price"] == pytest.approx(5.5)


def test_find_files(tmp_path, amazon2018_dir):
    reviews, meta = find_files(amazon2018_dir)
    assert (reviews.name, meta.name) == ("Toys_5.json.gz", "meta_Toys.json.gz")
    assert find_files(amazon2018_dir / "Toys_5.json.gz") == (reviews, meta)
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps(meta2018("I0", "x")) + "\n")
    assert find_files(amazon2018_dir / "Toys_5.json.gz", other)[1] == other
    with pytest.raises(DataError, match="does not exist"):
        find_files(tmp_path / "nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no review file"):
        find_files(tmp_path / "empty_dir")


def test_without_meta_needs_keep_untitled(tmp_path):
    write_lines(tmp_path / "Toys_5.json.gz", (json.dumps(r) for r in grid_reviews()))
    with pytest.raises(DataError, match="--keep-untitled"):
        load_amazon2018(tmp_path)
    ds = load_amazon2018(tmp_path, settings=ReviewFilters(drop_untitled=False))
    assert ds.n_items == 6 and ds.titles[0] == ds.item_ids[0]


def test_meta_file_of_another_category(tmp_path):
    write_lines(tmp_path / "Toys_5.json.gz", (json.dumps(r) for r in grid_reviews()))
    write_lines(tmp_path / "meta_Toys.json.gz", [json.dumps(meta2018("OTHER", "x"))])
    with pytest.raises(DataError, match="no reviewed item has a title"):
        load_amazon2018(tmp_path)


def test_k_core_that_removes_everything_is_explained(amazon2018_dir):
    with pytest.raises(DataError, match="lower --min-user"):
        load_amazon2018(amazon2018_dir, settings=ReviewFilters(min_user=50))


@pytest.mark.parametrize(("raw", "price"), [("$12.99", 12.99), ("$1,299.00", 1299.0), ("$5.99 - $9.99", 5.99),
                                            (7, 7.0), ("", None), (None, None), ("free", None),
                                            ("<span class='a-price'>junk markup that is long</span>", None)])
def test_parse_price(raw, price):
    assert parse_price(raw) == (pytest.approx(price) if price is not None else None)
