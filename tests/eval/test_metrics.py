"""Metrics against hand-computed values; tie-breaking policies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from instructrec.eval.metrics import mean_ci, paired_difference, per_user_metrics, summarize, target_ranks


def test_per_user_metrics_hand_computed():
    m = per_user_metrics(np.array([1, 2, 3, 5, 6]))
    assert m["HR@1"].tolist() == [1, 0, 0, 0, 0]
    assert m["HR@3"].tolist() == [1, 1, 1, 0, 0]
    assert m["HR@5"].tolist() == [1, 1, 1, 1, 0]
    assert m["NDCG@3"] == pytest.approx([1.0, 1 / math.log2(3), 0.5, 0.0, 0.0])
    assert m["NDCG@5"] == pytest.approx([1.0, 1 / math.log2(3), 0.5, 1 / math.log2(6), 0.0])
    assert m["MRR"] == pytest.approx([1.0, 0.5, 1 / 3, 0.2, 1 / 6])


def test_target_ranks_without_ties():
    scores = np.array([[0.1, 0.9, 0.5, 0.3],   # target col 2 (0.5): one higher -> rank 2
                       [4.0, 3.0, 2.0, 1.0]])  # target col 0: best -> rank 1
    assert target_ranks(scores, np.array([2, 0])).tolist() == [2, 1]


def test_tie_policies():
    scores = np.zeros((1, 10))
    assert target_ranks(scores, np.array([3]), "pessimistic").tolist() == [10]
    assert target_ranks(scores, np.array([3]), "optimistic").tolist() == [1]
    # Random ties on a constant scorer give the expected value of a random ranking.
    many = np.zeros((20000, 10))
    ranks = target_ranks(many, np.zeros(20000, dtype=int), "random", seed=1)
    assert set(np.unique(ranks)) == set(range(1, 11))
    assert per_user_metrics(ranks)["HR@1"].mean() == pytest.approx(0.1, abs=0.01)
    # Seeded: the same seed gives the same ranks, another seed different ones.
    assert np.array_equal(ranks, target_ranks(many, np.zeros(20000, dtype=int), "random", seed=1))
    assert not np.array_equal(ranks, target_ranks(many, np.zeros(20000, dtype=int), "random", seed=2))


def test_partial_ties_only_shuffle_among_equals():
    scores = np.array([[5.0, 1.0, 1.0, 1.0, 0.0]])  # target col 1 ties with cols 2, 3; col 0 above
    ranks = {int(target_ranks(scores, np.array([1]), seed=s)[0]) for s in range(50)}
    assert ranks == {2, 3, 4}


def test_nan_scores_rank_last_and_valid_mask_excludes_items():
    scores = np.array([[np.nan, 0.2, 0.9, 0.1]])
    assert target_ranks(scores, np.array([0]), "pessimistic").tolist() == [4]
    valid = np.array([[True, True, False, True]])  # col 2 (a seen item) is not ranked
    assert target_ranks(scores, np.array([1]), valid=valid).tolist() == [1]


def test_mean_ci():
    v = np.array([1.0, 0.0, 1.0, 0.0])
    s = mean_ci(v)
    half = 1.959963984540054 * np.std(v, ddof=1) / 2
    assert s["mean"] == 0.5 and s["ci_low"] == pytest.approx(0.5 - half) and s["ci_high"] == pytest.approx(0.5 + half)
    assert summarize({"HR@1": v})["HR@1"]["n"] == 4


def test_paired_difference_pairs_users_by_row():
    rng = np.random.default_rng(0)
    base = rng.random(400)  # large between-user variance, shared by both methods
    a = {"HR@1": base + 0.05, "MRR": base}
    b = {"HR@1": base, "MRR": base}
    rows = np.arange(400)
    shuffled = rng.permutation(400)  # the same users in another order
    d = paired_difference(a, {k: v[shuffled] for k, v in b.items()}, rows, rows[shuffled])
    assert abs(d["HR@1"]["mean"] - 0.05) < 1e-12 and d["HR@1"]["ci_high"] - d["HR@1"]["ci_low"] < 1e-9
    assert d["MRR"]["mean"] == 0.0
    # only the shared users count
    part = paired_difference(a, {k: v[:100] for k, v in b.items()}, rows, rows[:100])
    assert part["HR@1"]["n"] == 100
    with pytest.raises(ValueError, match="share no user"):
        paired_difference(a, b, rows, rows + 1000)


def test_paired_differences_add_the_two_stage_metrics_where_lists_are_long():
    """Paired rows carry HR@10 / NDCG@10 when every result has them (lists of 20), not otherwise."""
    from instructrec.eval.protocol import EvalResult
    from instructrec.eval.runner import paired_differences, paired_markdown

    rows = np.arange(4)

    def result(name, ranks, hr_ks, ndcg_ks):
        ranks = np.asarray(ranks)
        return EvalResult(name, "seqrec", "rerank:sasrec:20", rows, ranks, per_user_metrics(ranks, hr_ks, ndcg_ks), 0.0)

    long = [result("a", [1, 12, 3, 9], (1, 10), (5, 10)), result("b", [2, 12, 11, 9], (1, 10), (5, 10))]
    [row] = paired_differences(long)
    assert row["HR@10"]["mean"] == pytest.approx(0.25) and "NDCG@10" in row
    assert "HR@10" in paired_markdown([row]).splitlines()[0]
    short = [result("a", [1, 2], (1,), (5,)), result("b", [2, 2], (1,), (5,))]
    for r in short:
        r.rows = rows[:2]
    [row] = paired_differences(short)
    assert set(row) >= {"HR@1", "NDCG@5"} and "HR@10" not in row
