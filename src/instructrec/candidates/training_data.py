"""What retrievers may learn from: training sequences only (no validation or test targets)."""

from __future__ import annotations

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit


def training_sequences(dataset: Dataset, split: LeaveOneOutSplit) -> list[np.ndarray]:
    """Per evaluated user the items before the validation target, then the short users' sequences.

    Row i (< len(split)) belongs to evaluated user `split.users[i]`; the rest to `split.train_only`.
    """
    return list(split.train) + [dataset.sequences[u] for u in split.train_only]


def training_users(split: LeaveOneOutSplit) -> np.ndarray:
    """Dataset user index of each row of `training_sequences`."""
    return np.concatenate([split.users, split.train_only]).astype(np.int64)


def validation_rows(split: LeaveOneOutSplit, n: int, seed: int) -> np.ndarray:
    """A seeded sample of at most `n` evaluated users (rows of `split`), sorted."""
    n = min(n, len(split))
    return np.sort(np.random.default_rng(seed).choice(len(split), size=n, replace=False))


def validate_full_ranking(model, split: LeaveOneOutSplit, rows: np.ndarray, k: int = 10) -> tuple[float, float]:
    """NDCG@k and HR@k of the validation targets ranked among all items, training items excluded.

    Used for early stopping: only training histories and validation targets are touched.
    """
    ndcg = hr = 0.0
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        hists = [split.train[r] for r in chunk]
        scores = np.array(model.score(hists, None, users=split.users[chunk]), dtype=np.float64)
        target = split.valid_target[chunk]
        tscore = scores[np.arange(len(chunk)), target].copy()
        for i, h in enumerate(hists):
            scores[i, h] = -np.inf
        rank = (scores > tscore[:, None]).sum(1) + 1
        hit = rank <= k
        hr += float(hit.sum())
        ndcg += float((hit / np.log2(rank + 1)).sum())
    return ndcg / max(len(rows), 1), hr / max(len(rows), 1)
