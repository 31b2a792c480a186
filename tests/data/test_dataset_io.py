"""Dataset construction, save/load round trip, atomic writes and text cleaning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from instructrec.data import Dataset
from instructrec.data.dataset import clean_long_text, clean_text
from instructrec.errors import DataError


def small_dataset(source: str = "test") -> Dataset:
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["Tom &amp; Jerry", "  Big\n\tGame ", None],
                          "categories": [["Toys", "Kids"], [], ["Games"]], "price": [1.5, None, 3],
                          "description": ["x &lt;3", None, None]})
    inter = pd.DataFrame({"user_id": ["u1", "u2", "u1", "u1", "u2"], "item_id": ["b", "a", "a", "c", "c"],
                          "timestamp": [30, 5, 10, 20, 1], "rating": [5, 4, 3, None, 2]})
    reviews = pd.DataFrame({"user_id": ["u1"], "item_id": ["a"], "rating": [3.0],
                            "text": ["Great &amp;\nfun"], "summary": ["ok"], "timestamp": [10]})
    return Dataset.from_frames(items, inter, reviews, source=source, filters={"k": 1})


def test_from_frames_cleans_and_orders():
    ds = small_dataset()
    assert list(ds.titles) == ["Tom & Jerry", "Big Game", "c"]  # missing title -> id
    assert ds.items.loc[0, "description"] == "x <3"
    assert list(ds.user_ids) == ["u1", "u2"]  # order of first appearance
    assert [list(ds.item_ids[s]) for s in ds.sequences] == [["a", "c", "b"], ["c", "a"]]  # by time
    assert ds.reviews.loc[0, "text"] == "Great & fun"
    assert ds.items.loc[2, "price"] == 3.0 and pd.isna(ds.items.loc[1, "price"])
    assert ds.counts() == {"users": 2, "items": 3, "interactions": 5, "reviews": 1}


def test_round_trip(tmp_path):
    ds = small_dataset()
    ds.save(tmp_path / "ds")
    back = Dataset.load(tmp_path / "ds")
    for name in ("items", "interactions", "reviews"):
        pd.testing.assert_frame_equal(getattr(ds, name), getattr(back, name))
    assert [list(s) for s in back.sequences] == [list(s) for s in ds.sequences]
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["counts"] == ds.counts() and manifest["filters"] == {"k": 1} and manifest["version"] == 1
    assert back.stats() == ds.stats()


def test_save_replaces_an_older_dataset(tmp_path):
    small_dataset("first").save(tmp_path / "ds")
    small_dataset("second").save(tmp_path / "ds")
    assert Dataset.load(tmp_path / "ds").manifest.source == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folders left


def test_interrupted_save_leaves_old_dataset_intact(tmp_path, monkeypatch):
    small_dataset("old").save(tmp_path / "ds")
    calls = []
    real_write = pq.write_table

    def failing_write(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) % 3 == 2:  # die after the first Parquet file, as a kill or a full disk would
            raise KeyboardInterrupt
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", failing_write)
    with pytest.raises(KeyboardInterrupt):
        small_dataset("new").save(tmp_path / "ds")
    calls.append("-")  # the next save fails at its second file too
    with pytest.raises(KeyboardInterrupt):
        small_dataset("new").save(tmp_path / "fresh")
    monkeypatch.undo()
    assert Dataset.load(tmp_path / "ds").manifest.source == "old"
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_half_written_folder_is_refused(tmp_path):
    small_dataset().save(tmp_path / "ds")
    (tmp_path / "ds" / "manifest.json").unlink()
    with pytest.raises(DataError, match="not a complete dataset folder"):
        Dataset.load(tmp_path / "ds")
    with pytest.raises(DataError, match="does not exist"):
        Dataset.load(tmp_path / "none")
    with pytest.raises(DataError, match="is not a dataset folder"):
        small_dataset().save(tmp_path / "ds")  # never overwrite a folder we did not write
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="damaged"):
        Dataset.load(tmp_path / "bad")


def test_from_frames_errors():
    with pytest.raises(DataError, match=r"missing required column\(s\) \['user_id'\]"):
        Dataset.from_frames(pd.DataFrame({"item_id": ["a"]}), pd.DataFrame({"item_id": ["a"]}), source="t")
    with pytest.raises(DataError, match="missing from the item table"):
        Dataset.from_frames(pd.DataFrame({"item_id": ["a"]}), pd.DataFrame({"user_id": ["u"], "item_id": ["z"]}),
                            source="t")
    ds = Dataset.from_frames(pd.DataFrame({"item_id": ["a"]}),
                             pd.DataFrame({"user_id": ["u", "u"], "item_id": ["z", "a"]}), source="t",
                             unknown_items="drop")
    assert ds.n_interactions == 1
    with pytest.raises(DataError, match="unknown item id 'q'"):
        ds.item_index("q")
    with pytest.raises(DataError, match="unknown user id"):
        ds.user_index("nobody")


@pytest.mark.parametrize(("raw", "clean"), [
    ("Halo &amp;amp; Friends", "Halo & Friends"),  # double-escaped dumps
    ("Pok&eacute;mon &#8211; Red", "Pokémon – Red"),
    ("  a \n\t b\u00a0c  ", "a b c"), ("", None), ("   ", None), (None, None), (float("nan"), None), (12, "12"),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean
    assert clean_long_text(raw) == clean


def test_clean_long_text_only_strips_plain_spaces():
    assert clean_long_text(" a  b ") == "a  b"  # documented: double spaces alone are left alone
    assert clean_text(" a  b ") == "a b"


def test_stats_shares():
    stats = small_dataset().stats()
    assert stats["items_with_title"] == pytest.approx(2 / 3)
    assert stats["items_with_categories"] == pytest.approx(2 / 3)
    assert stats["history_min"] == 2 and stats["history_max"] == 3
    assert stats["sparsity"] == pytest.approx(1 - 5 / 6)
    assert np.isfinite(stats["history_mean"])
