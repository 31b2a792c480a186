"""Collaborative signal as text: each candidate's rank by a first-stage recommender, written next
to its title in the instruction (issue 15, lever 2; LlamaRec and LLaRA give a small LLM the
collaborative signal, without which text alone trails SASRec on warm users).

    A. Halo 3 (collaborative rank 1)
    B. FIFA 12 (collaborative rank 4)

The rank is among the instruction's own candidates (1 = the first stage's favourite), from the
history the instruction shows, so it is the same whatever order the candidates are listed in.
ONE writer serves both sides: the instruction builder annotates training candidates with it and
the reranker (`recommender.reranker`, retriever role `note`) annotates served ones.

The `order` style carries the same ranks without text: the candidates are listed best first by
the first stage (builder `BuildSettings.order`, reranker role `order`). A note written as text
must be found and copied by the model (its letter ~20 tokens before "rank 1"); listed first, the
favourite's letter is always `A`: measured in RESULTS.md (issue 15).

A first stage fitted on the training sequences has seen the training examples' targets: their
ranks are better than it gives on held-out items, so a model tuned on them may trust the note
more than it should. The cure is a recipe setting: a retriever variant with `holdout: 1` (fitted
without each user's last training item) ranks the candidates of `targets: last` instructions
(that item as the target). Measured in RESULTS.md: it removes the gap, and the model still learns
the position prior only.

The `prior` style carries the first stage's scores into the model's score instead of its prompt:
a model tuned with `candidate_prior` (builder `BuildSettings.prior`) learns its title scores as a
residual on top of `prior_weight` times the candidates' z-scored first-stage scores, the sum is
what it ranks with (reranker role `prior`). The order and notes above made the small model copy
the first stage; the prior is added outside the model, so its whole budget goes to what the first
stage gets wrong (boosting's residual fit; its loss counts only where the prior is not already
sure).
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

    def _scores(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
                users: np.ndarray | None) -> np.ndarray:
        kwargs = {"users": np.asarray(users, dtype=np.int64)} if users is not None else {}
        scores = np.asarray(self.retriever.score(list(histories), candidates, None, **kwargs), dtype=np.float64)
        return np.where(np.isfinite(scores), scores, -np.inf)

    def ranks(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
              users: np.ndarray | None = None) -> np.ndarray:
        """(n, C) 1-based ranks of the candidates by the retriever's score (ties: listed order)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        order = np.argsort(-self._scores(histories, candidates, users), axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, candidates.shape[1] + 1)[None, :].repeat(len(order), 0), 1)
        return ranks

    def orders(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
               users: np.ndarray | None = None) -> np.ndarray:
        """(n, C) positions into each row's candidates, the first stage's favourite first: the order
        to list them in (`order` style: LlamaRec lists the retriever's candidates in its order, so a
        small model reads the collaborative signal as a position prior it learns in few steps).
        Ties go to the smaller item index, so training and serving list tied items alike whatever
        order the candidates came in."""
        candidates = np.asarray(candidates, dtype=np.int64)
        scores = self._scores(histories, candidates, users)
        return np.stack([np.lexsort((row_items, -row)) for row, row_items in zip(scores, candidates, strict=True)]
                        ) if len(candidates) else np.zeros(candidates.shape, dtype=np.int64)

    def prior(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
              users: np.ndarray | None = None) -> np.ndarray:
        """(n, C) per-row z-scores of the candidates' first-stage scores (`prior` style): the same
        standardisation the reranker fuses retrievers with."""
        from instructrec.recommender.reranker import standardize  # the reranker imports this module

        return standardize(self._scores(histories, np.asarray(candidates, dtype=np.int64), users))

    def __call__(self, histories: Sequence[np.ndarray], candidates: np.ndarray,
                 users: np.ndarray | None = None) -> list[list[str]]:
        """The note of every candidate, per row."""
        return [[NOTE_FORMAT.format(rank=int(r)) for r in row] for row in self.ranks(histories, candidates, users)]
