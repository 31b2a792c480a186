"""Collaborative signal as text: each candidate's rank by a first-stage recommender, written next
to its title in the instruction (issue 15, lever 2; LlamaRec and LLaRA give a small LLM the
collaborative signal, without which text alone trails SASRec on warm users).

    A. Halo 3 (collaborative rank 1)
    B. FIFA 12 (collaborative rank 4)

The rank is among the instruction's own candidates (1 = the first stage's favourite), from the
history the instruction shows, so it is the same whatever order the candidates are listed in.
ONE writer serves both sides: the instruction builder annotates training candidates with it and
the reranker (`recommender.reranker`, retriever role `note`) annotates served ones.

A first stage fitted on the training sequences has seen the training examples' targets: their
ranks are better than it gives on held-out items, so a model tuned on them may trust the note
more than it should. Measured, not corrected (RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NOTE_FORMAT = "collaborative rank {rank}"


@dataclass(frozen=True)
class CandidateNotes:
    """Writes each candidate's first-stage rank among its list as a note."""

    retriever: Any
    """A fitted retriever (its `score(histories, candidates, texts, users=...)`)."""
    key: str
    """Identifies the retriever's fit (e.g. `sasrec-<stage hash>`): part of instruction build
    fingerprints, so notes from another first stage never mix into a build."""

    def ranks(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
              users: np.ndarray | None = None) -> np.ndarray:
        """(n, C) 1-based ranks of the candidates by the retriever's score (ties: listed order)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        kwargs = {"users": np.asarray(users, dtype=np.int64)} if users is not None else {}
        scores = np.asarray(self.retriever.score(list(histories), candidates, None, **kwargs), dtype=np.float64)
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, candidates.shape[1] + 1)[None, :].repeat(len(order), 0), 1)
        return ranks

    def __call__(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
                 users: np.ndarray | None = None) -> list[list[str]]:
        """The note of every candidate, per row."""
        return [[NOTE_FORMAT.format(rank=int(r)) for r in row] for row in self.ranks(histories, candidates, users)]
