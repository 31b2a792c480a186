"""Leave-one-out split and history truncation (the paper's protocol).

For every user with at least three interactions the last item is the test target, the
second-to-last the validation target, and everything before is training. Users with fewer than
three interactions contribute only training data and are not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from instructrec.data.dataset import Dataset

DEFAULT_HISTORY = 20
"""History length used in instructions, as in the paper (the 20 most recent items)."""

Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Per evaluated user: training sequence and validation/test targets (item indices).

    Attributes:
        users: user indices of evaluated users (those with >= 3 interactions).
        train: per evaluated user, the items before the validation target, oldest first.
        valid_target: per evaluated user, the second-to-last item.
        test_target: per evaluated user, the last item.
        train_only: user indices with < 3 interactions (their whole sequence is training data).
    """

    users: np.ndarray
    train: list[np.ndarray]
    valid_target: np.ndarray
    test_target: np.ndarray
    train_only: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def history(self, row: int, split: Split, max_len: int | None = None) -> np.ndarray:
        """The history seen when predicting `split`'s target for evaluated user number `row`.

        train and valid: the training sequence; test: the training sequence plus the validation
        target. Truncated to the `max_len` most recent items if given.
        """
        seq = self.train[row]
        if split == "test":
            seq = np.append(seq, self.valid_target[row])
        return truncate_history(seq, max_len)

    def target(self, row: int, split: Split) -> int:
        if split == "test":
            return int(self.test_target[row])
        if split == "valid":
            return int(self.valid_target[row])
        raise ValueError("training examples have no single target; iterate the training sequence")


def withhold_last(split: LeaveOneOutSplit, n: int) -> LeaveOneOutSplit:
    """`split` with the last `n` items of every evaluated user's training sequence withheld (users
    whose training sequence is shorter keep none of it). A model fitted on it has not seen those
    items, so its ranks of them are as good as its ranks of held-out targets; the instruction
    builder's `targets: last` asks for exactly those ranks (issue 15)."""
    if n <= 0:
        return split
    return LeaveOneOutSplit(split.users, [t[:max(len(t) - n, 0)] for t in split.train], split.valid_target,
                            split.test_target, split.train_only)


def truncate_history(seq: np.ndarray, max_len: int | None = DEFAULT_HISTORY) -> np.ndarray:
    """The `max_len` most recent items of `seq` (oldest first); all of it if `max_len` is None."""
    if max_len is None or len(seq) <= max_len:
        return seq
    return seq[len(seq) - max_len:] if max_len > 0 else seq[:0]


def leave_one_out(dataset: Dataset) -> LeaveOneOutSplit:
    """Split every user's sequence: last = test, second-to-last = validation, the rest = train."""
    lengths = np.fromiter((len(s) for s in dataset.sequences), dtype=np.int64, count=dataset.n_users)
    evaluated = np.flatnonzero(lengths >= 3)
    seqs = dataset.sequences
    return LeaveOneOutSplit(
        users=evaluated,
        train=[seqs[u][:-2] for u in evaluated],
        valid_target=np.fromiter((seqs[u][-2] for u in evaluated), dtype=np.int64, count=len(evaluated)),
        test_target=np.fromiter((seqs[u][-1] for u in evaluated), dtype=np.int64, count=len(evaluated)),
        train_only=np.flatnonzero(lengths < 3),
    )
