"""De-duplication, k-core (a property test for the fixed point) and the leave-one-out split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instructrec.data import Dataset, leave_one_out, truncate_history
from instructrec.data.preprocess import deduplicate, k_core

pairs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 9)), min_size=0, max_size=120)


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{u}" for u, _ in rows], "item_id": [f"i{i}" for _, i in rows],
                         "timestamp": np.arange(len(rows)), "rating": np.ones(len(rows))})


@settings(max_examples=150, deadline=None)
@given(pairs, st.integers(1, 5), st.integers(1, 5))
def test_k_core_reaches_the_fixed_point(rows, min_user, min_item):
    inter = frame(rows)
    out = k_core(inter, min_user, min_item)
    if len(out):
        assert out["user_id"].value_counts().min() >= min_user
        assert out["item_id"].value_counts().min() >= min_item
    pd.testing.assert_frame_equal(k_core(out, min_user, min_item), out)  # idempotent
    # maximal: every removed row belongs to a user or item that cannot meet its threshold even
    # together with every kept row (i.e. the result is the largest k-core, computed naively)
    keep = inter.copy()
    while True:
        u = keep["user_id"].map(keep["user_id"].value_counts()) >= min_user
        i = keep["item_id"].map(keep["item_id"].value_counts()) >= min_item
        if (u & i).all():
            break
        keep = keep[u & i]
    assert len(out) == len(keep)


@settings(max_examples=100, deadline=None)
@given(pairs)
def test_dedup_keeps_the_earliest_of_each_pair(rows):
    inter = frame(rows).sample(frac=1.0, random_state=0)  # input order must not matter
    out = deduplicate(inter)
    assert not out.duplicated(["user_id", "item_id"]).any()
    earliest = inter.groupby(["user_id", "item_id"])["timestamp"].min()
    got = out.set_index(["user_id", "item_id"])["timestamp"]
    assert got.sort_index().equals(earliest.sort_index())


def _dataset(lengths):
    rows = [(f"u{u}", f"i{(u * 7 + k) % 40}", k) for u, n in enumerate(lengths) for k in range(n)]
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(40)], "title": [f"t{j}" for j in range(40)]})
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frames(items, inter, source="t")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=20))
def test_leave_one_out_invariants(lengths):
    ds = _dataset(lengths)
    split = leave_one_out(ds)
    assert list(split.users) == [u for u, n in enumerate(lengths) if n >= 3]
    assert list(split.train_only) == [u for u, n in enumerate(lengths) if n < 3]
    for row, user in enumerate(split.users):
        seq = ds.sequences[user]
        assert split.test_target[row] == seq[-1] and split.valid_target[row] == seq[-2]
        assert list(split.train[row]) == list(seq[:-2])
        assert list(split.history(row, "test")) == list(seq[:-1])
        assert list(split.history(row, "valid")) == list(seq[:-2])
        assert list(split.history(row, "test", max_len=4)) == list(seq[:-1][-4:])
        assert split.target(row, "test") == seq[-1]
    again = leave_one_out(_dataset(lengths))  # deterministic
    assert all((a == b).all() for a, b in zip(again.train, split.train))
    assert (again.test_target == split.test_target).all()


def test_truncate_history():
    seq = np.arange(30)
    assert list(truncate_history(seq)) == list(range(10, 30))  # the paper's 20 most recent
    assert list(truncate_history(seq, 3)) == [27, 28, 29]
    assert len(truncate_history(seq, 0)) == 0 and len(truncate_history(seq, None)) == 30
    with pytest.raises(ValueError):
        leave_one_out(_dataset([5])).target(0, "train")
