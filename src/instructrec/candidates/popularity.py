"""Most-popular baseline: an item's score is its interaction count in the training data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from instructrec.candidates.base import STATE_FILE, Retriever, register
from instructrec.candidates.training_data import training_sequences
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit


@dataclass
class PopularitySettings:
    """Popularity has nothing to tune; counts come from training sequences only."""

    smoothing: float = 0.0
    """Added to every count (keeps never-seen items orderable by index only through ties)."""


@register("popularity")
class Popularity(Retriever):
    """Scores every item by how often it occurs in training sequences (same for all users)."""

    Settings = PopularitySettings

    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        seqs = training_sequences(dataset, split)
        flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        counts = np.bincount(flat, minlength=dataset.n_items).astype(np.float32)
        self.counts = counts + np.float32(self.settings.smoothing)

    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        if candidates is None:
            return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()
        return self.counts[np.asarray(candidates, dtype=np.int64)]

    def _save_state(self, path: Path) -> None:
        save_file({"counts": self.counts}, str(path / STATE_FILE))

    def _load_state(self, path: Path) -> None:
        self.counts = load_file(str(path / STATE_FILE))["counts"]
