"""BPR-MF (Rendle et al., UAI 2009) through the `implicit` library's BayesianPersonalizedRanking.

The user-item matrix holds training interactions only. Training runs in chunks of `eval_every`
iterations (implicit continues from the current factors when `fit` is called again) and keeps the
factors of the chunk with the best validation score (early stopping with `patience`).

A known user (dataset user index given) is scored with its learned vector. A history from an
unknown user is folded in as the mean of its items' factors (with the bias component set to 1),
the usual cheap fold-in for item-factor models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from instructrec.candidates.base import STATE_FILE, Retriever, register
from instructrec.candidates.training_data import (
    Validator,
    training_sequences,
    training_users,
)
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit

logger = logging.getLogger(__name__)


@dataclass
class BPRSettings:
    """BPR-MF settings (implicit's defaults except where noted)."""

    factors: int = 64
    """Latent dimensions (implicit adds one bias dimension)."""
    learning_rate: float = 0.05
    """SGD learning rate."""
    regularization: float = 0.01
    """L2 regularisation."""
    iterations: int = 200
    """Upper bound on epochs over the interactions."""
    eval_every: int = 10
    """Iterations between validation checks."""
    patience: int = 3
    """Stop after this many checks without a better validation score."""
    valid_protocol: str = "full"
    """Early-stopping score: full = NDCG@10 over all items; sampled = NDCG@5 against 9 random items."""
    valid_users: int = 5000
    """Users sampled (seeded) for validation; 0 turns early stopping off."""
    seed: int = 0
    """Seeds factor initialisation, negative sampling and the validation sample."""
    threads: int = 1
    """implicit worker threads."""
    progress: bool = True
    """Show a progress bar."""


@register("bpr")
class BPR(Retriever):
    Settings = BPRSettings

    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        s = self.settings
        seqs, users = training_sequences(dataset, split), training_users(split)
        rows = np.repeat(users, [len(q) for q in seqs])
        cols = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                               shape=(dataset.n_users, dataset.n_items))
        matrix.data[:] = 1.0  # duplicates summed by scipy; BPR wants a binary signal
        model = BayesianPersonalizedRanking(factors=s.factors, learning_rate=s.learning_rate,
                                            regularization=s.regularization, iterations=s.eval_every,
                                            random_state=s.seed, num_threads=s.threads)
        validate = Validator(split, s.valid_users, s.seed, s.valid_protocol, dataset.n_items)
        best, best_state, bad, done = -1.0, None, 0, 0
        self.history_: list[dict[str, float]] = []
        bar = tqdm(total=s.iterations, desc="bpr", disable=not s.progress, leave=False)
        while done < s.iterations:
            model.iterations = min(s.eval_every, s.iterations - done)
            model.fit(matrix, show_progress=False)
            done += model.iterations
            bar.update(model.iterations)
            self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
            self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
            if not len(validate):
                continue
            ndcg, hr = validate(self)
            names = validate.names
            self.history_.append({"iteration": done, f"valid_{names[0]}": ndcg, f"valid_{names[1]}": hr})
            logger.info("bpr iteration %d: valid %s %.4f %s %.4f", done, names[0], ndcg, names[1], hr)
            if ndcg > best + 1e-4:
                best, best_state, bad = ndcg, (self.user_factors.copy(), self.item_factors.copy()), 0
            else:
                bad += 1
                if bad >= s.patience:
                    break
        bar.close()
        if best_state is not None:
            self.user_factors, self.item_factors = best_state

    def _user_vectors(self, histories: Sequence[np.ndarray], users: np.ndarray | None) -> np.ndarray:
        out = np.empty((len(histories), self.item_factors.shape[1]), dtype=np.float32)
        for i, h in enumerate(histories):
            u = -1 if users is None else int(users[i])
            if 0 <= u < len(self.user_factors):
                out[i] = self.user_factors[u]
            else:
                out[i] = self.item_factors[np.asarray(h, dtype=np.int64)].mean(0) if len(h) else 0.0
                out[i, -1] = 1.0
        return out

    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        vec = self._user_vectors(histories, users)
        if candidates is None:
            return vec @ self.item_factors.T
        return np.einsum("bh,bch->bc", vec, self.item_factors[np.asarray(candidates, dtype=np.int64)])

    def _save_state(self, path: Path) -> None:
        save_file({"user_factors": self.user_factors, "item_factors": self.item_factors}, str(path / STATE_FILE))

    def _load_state(self, path: Path) -> None:
        state = load_file(str(path / STATE_FILE))
        self.user_factors, self.item_factors = state["user_factors"], state["item_factors"]
