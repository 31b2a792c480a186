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


class Validator:
    """Early-stopping score on validation targets (training histories only as input).

    protocol "full": NDCG@10 (and HR@10) of the target among all items, training items excluded.
    protocol "sampled": NDCG@5 (and HR@1) of the target against `n_negatives` seeded uniform items
    the user has not interacted with, i.e. the paper's 1 + 9 evaluation applied to the validation
    split.
    """

    def __init__(self, split: LeaveOneOutSplit, n_users: int, seed: int, protocol: str = "full",
                 n_items: int = 0, n_negatives: int = 9) -> None:
        if protocol not in ("full", "sampled"):
            raise ValueError(f"unknown validation protocol {protocol!r}; use full or sampled")
        self.split, self.protocol = split, protocol
        self.rows = validation_rows(split, n_users, seed)
        self.names = ("NDCG@10", "HR@10") if protocol == "full" else ("NDCG@5", "HR@1")
        if protocol == "sampled" and len(self.rows):
            rng = np.random.default_rng(seed)
            cands = np.empty((len(self.rows), n_negatives + 1), dtype=np.int64)
            for i, r in enumerate(self.rows):
                seen = np.append(split.train[r], split.valid_target[r])
                negs: list[int] = []
                while len(negs) < n_negatives:
                    item = int(rng.integers(n_items))
                    if item not in negs and item not in seen:
                        negs.append(item)
                cands[i] = [split.valid_target[r], *negs]
            self.candidates = cands

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, model) -> tuple[float, float]:
        if self.protocol == "full":
            return validate_full_ranking(model, self.split, self.rows)
        hists = [self.split.train[r] for r in self.rows]
        scores = np.asarray(model.score(hists, self.candidates, users=self.split.users[self.rows]), dtype=np.float64)
        rank = 1 + (scores[:, 1:] >= scores[:, :1]).sum(1)  # pessimistic ties
        return float(np.where(rank <= 5, 1 / np.log2(rank + 1), 0).mean()), float((rank == 1).mean())
