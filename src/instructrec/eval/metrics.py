"""Ranking metrics from the rank of the one true item, with seeded tie-breaking and 95% CIs.

Every evaluated user has exactly one relevant item (leave-one-out), so all metrics are functions
of its 1-based rank r among the candidates:

- HR@k = 1 if r <= k else 0
- NDCG@k = 1 / log2(r + 1) if r <= k else 0 (the ideal DCG is 1)
- MRR = 1 / r

Ties: with `ties="random"` (default) the true item is placed uniformly at random among the items
that share its score, drawn from `numpy.random.default_rng(seed)`: rank = 1 + #(higher) + U where
U is uniform on {0, ..., #(equal others)}. `"pessimistic"` puts it after every tied item and
`"optimistic"` before them. A constant scorer thus gets the expected value of a random ranking
(random), zero credit for ties (pessimistic), or full credit (optimistic, never use for reporting).
NaN scores count as -inf. A target that is not among the candidates at all (two-stage
`rerank:` sets, `target_pos` -1) gets rank `ABSENT_RANK`: a miss for every HR@k / NDCG@k and
(near) zero MRR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Ties = Literal["random", "pessimistic", "optimistic"]

HR_KS: tuple[int, ...] = (1, 3, 5)
NDCG_KS: tuple[int, ...] = (3, 5)
Z95 = 1.959963984540054
ABSENT_RANK = 1 << 30
"""Rank of a target the candidates do not contain (beyond any list)."""


def metric_ks(size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The HR and NDCG cut-offs reported for lists of `size` candidates: k = 10 joins where it is
    not trivially 1 (more than 10 candidates)."""
    return (HR_KS + (10,), NDCG_KS + (10,)) if size > 10 else (HR_KS, NDCG_KS)


def ranks_from_counts(higher: np.ndarray, equal: np.ndarray, ties: Ties = "random",
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """1-based ranks from the number of strictly higher and of other equal scores per row."""
    higher = np.asarray(higher, dtype=np.int64)
    equal = np.asarray(equal, dtype=np.int64)
    if ties == "pessimistic":
        return 1 + higher + equal
    if ties == "optimistic":
        return 1 + higher
    if ties != "random":
        raise ValueError(f"unknown tie policy {ties!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    return 1 + higher + np.floor(rng.random(len(higher)) * (equal + 1)).astype(np.int64)


def target_ranks(scores: np.ndarray, target_pos: np.ndarray, ties: Ties = "random",
                 seed: int | np.random.Generator = 0, valid: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of column `target_pos[i]` in row i of `scores` (higher score = better).

    `valid` (same shape, bool) excludes columns from the ranking (e.g. already seen items); the
    target column is always kept.
    """
    scores = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=np.float64))
    n = scores.shape[0]
    target_pos = np.asarray(target_pos, dtype=np.int64)
    absent = target_pos < 0
    if absent.any():
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        present = target_ranks(scores, np.where(absent, 0, target_pos), ties, rng, valid)
        return np.where(absent, ABSENT_RANK, present)
    t = scores[np.arange(n), target_pos][:, None]
    keep = np.ones_like(scores, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).copy()
    keep[np.arange(n), target_pos] = False  # count "others" only
    higher = ((scores > t) & keep).sum(1)
    equal = ((scores == t) & keep).sum(1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return ranks_from_counts(higher, equal, ties, rng)


def per_user_metrics(ranks: np.ndarray, hr_ks: Sequence[int] = HR_KS,
                     ndcg_ks: Sequence[int] = NDCG_KS) -> dict[str, np.ndarray]:
    """Per-user HR@k, NDCG@k and MRR from 1-based ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for k in hr_ks:
        out[f"HR@{k}"] = (r <= k).astype(np.float64)
    for k in ndcg_ks:
        out[f"NDCG@{k}"] = np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)
    out["MRR"] = 1.0 / r
    return out


def mean_ci(values: np.ndarray) -> dict[str, float]:
    """Mean with a normal-approximation 95% confidence interval (t ~ z at these sample sizes)."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    mean = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired_difference(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                      rows_a: np.ndarray, rows_b: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-metric mean of `a - b` with a 95% CI, over the users both were evaluated on (paired by
    row). Pairing removes the between-user variance that two separate intervals carry, so a gap
    can be significant while the two methods' own intervals overlap."""
    common, ia, ib = np.intersect1d(np.asarray(rows_a), np.asarray(rows_b), return_indices=True)
    if len(common) == 0:
        raise ValueError("the two results share no user: evaluate both on the same rows")
    return {name: mean_ci(np.asarray(a[name])[ia] - np.asarray(b[name])[ib]) for name in a if name in b}


def summarize(per_user: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and 95% CI of every per-user metric."""
    return {name: mean_ci(values) for name, values in per_user.items()}
