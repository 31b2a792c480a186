"""The tuned LLM as a reranker, and its fusion with the first-stage retriever.

`LLMScorer` renders one T3 instruction per user with the same `Renderer` and templates the
training data used, and scores every candidate title by its (length-normalised) log-likelihood
(`model.scoring.CandidateScorer`, shared-prefix). It implements the evaluation harness's Scorer
protocol (`eval.protocol`), so the LLM, the retrievers and their fusion are judged on exactly the
same candidates.

`FusionScorer` mixes the two signals per user after standardising each over that user's
candidates (z-scores: the LLM's log-likelihoods and a retriever's logits live on unrelated
scales); `fit_fusion_weight` picks the LLM weight on validation users.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.eval.metrics import target_ranks
from instructrec.instructions.render import Renderer
from instructrec.instructions.schema import Aspects, Intention, Preference
from instructrec.model.scoring import CandidateScorer, Normalize

log = logging.getLogger(__name__)


@dataclass
class LLMScorer:
    """Scores candidates with an instruction-following LLM for one aspect combination.

    `queries[i]` (from the harness) is the intention text for I1/I2 tasks and the preference text
    for P2 tasks; histories are shown for P1 tasks.
    """

    dataset: Dataset
    scorer: CandidateScorer
    aspects: str = "P1,I0,T3"
    renderer: Renderer | None = None
    template_id: str | None = None
    normalize: Normalize = "mean"
    name: str = "llm"

    def __post_init__(self) -> None:
        self.renderer = self.renderer or Renderer(self.dataset)
        self._aspects = Aspects.parse(self.aspects)
        self.instructions: list[str] = []
        """The most recent batch's instruction texts (for reports and debugging)."""
        self._memo: dict[tuple, np.ndarray] = {}
        # The fused scorer and the plain LLM are evaluated on the same users and candidates; the
        # memo makes the second pass free (LLM scoring dominates the evaluation's cost).

    def render(self, history: np.ndarray, candidates: Sequence[int], query: str | None) -> str:
        has_intention = self._aspects.intention is not Intention.NONE
        has_pref = Preference.EXPLICIT in self._aspects.preference
        ins = self.renderer.rerank(
            self._aspects, history=history, candidates=list(candidates),
            intention=query if has_intention else None,
            preference=query if has_pref and not has_intention else None,
            template_id=self.template_id,
        )
        return ins.text

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray], candidates: np.ndarray,
              queries: Sequence[str] | None) -> np.ndarray:
        keys = [(tuple(int(h) for h in histories[i]), tuple(int(c) for c in candidates[i]),
                 queries[i] if queries is not None else None) for i in range(len(rows))]
        todo = [i for i, key in enumerate(keys) if key not in self._memo]
        texts = [self.render(histories[i], candidates[i], keys[i][2]) for i in todo]
        titles = [[str(self.dataset.titles[int(j)]) for j in candidates[i]] for i in todo]
        if todo:
            for i, scores in zip(todo, self.scorer.score(texts, titles, self.normalize), strict=True):
                self._memo[keys[i]] = scores
        self.instructions = texts
        return np.stack([self._memo[key] for key in keys])


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (a constant row becomes zeros); -inf/NaN are treated as the row minimum."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.where(np.isfinite(s), s, np.nan)
    low = np.nanmin(np.where(np.isnan(finite), np.inf, finite), axis=1, keepdims=True)
    s = np.where(np.isfinite(s), s, low)
    std = s.std(axis=1, keepdims=True)
    return (s - s.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


@dataclass
class FusionScorer:
    """`weight * z(llm) + (1 - weight) * z(retriever)` over each user's candidates."""

    llm: LLMScorer
    retriever: object
    """A Scorer (e.g. `eval.protocol.RetrieverScorer`)."""
    weight: float = 0.5
    name: str = "fused"

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray], candidates: np.ndarray,
              queries: Sequence[str] | None) -> np.ndarray:
        llm = self.llm.score(rows, histories, candidates, queries)
        ret = self.retriever.score(rows, histories, candidates, queries)  # type: ignore[attr-defined]
        return fuse(llm, ret, self.weight)


def fuse(llm_scores: np.ndarray, retrieval_scores: np.ndarray, weight: float) -> np.ndarray:
    return weight * standardize(llm_scores) + (1.0 - weight) * standardize(retrieval_scores)


def fit_fusion_weight(llm_scores: np.ndarray, retrieval_scores: np.ndarray, target_pos: np.ndarray,
                      grid: Sequence[float] = tuple(np.round(np.linspace(0, 1, 21), 2)), seed: int = 0) -> float:
    """The LLM weight with the best mean NDCG@5 (ties: MRR, then the smaller weight) on validation users.

    Scores are computed once per method; only the mix is searched, so fitting costs nothing extra
    beyond scoring the validation candidates with both methods.
    """
    best: tuple[float, float, float] | None = None
    best_w = 0.5
    for w in grid:
        ranks = target_ranks(fuse(llm_scores, retrieval_scores, float(w)), target_pos, "random", seed)
        ndcg = float(np.where(ranks <= 5, 1.0 / np.log2(ranks + 1), 0.0).mean())
        mrr = float((1.0 / ranks).mean())
        key = (ndcg, mrr, -float(w))
        if best is None or key > best:
            best, best_w = key, float(w)
    log.info("fusion weight %.2f (validation NDCG@5 %.4f)", best_w, best[0] if best else float("nan"))
    return best_w
