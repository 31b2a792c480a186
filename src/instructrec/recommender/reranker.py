"""The one reranking path: what is evaluated is what is served.

`Reranker.score_batch(queries, candidates)` takes a batch of users' queries (history and/or
request texts, already routed to aspects) and their candidate items, and returns one scored
`ItemList` per user with the named columns it was computed from:

* `retrieval`: the first-stage signal, the sum of per-user z-scores of every retriever that
  applies to the query (history retrievers read the history, text retrievers the request text);
* `llm`: the instruction-following LLM's (length-normalised) log-likelihood of each title given
  the instruction rendered from the query with the same templates and wording as training;
* `scores`: the final score: the LLM's where no fusion weight was fitted for the query's aspects,
  else `w * z(llm) + (1 - w) * z(retrieval)` with the weight fitted for those aspects on validation
  users (`fit_fusion`); the retrieval signal alone when there is no LLM or nothing to read; with a
  learned stacker's weights (a list) `sum_k w_k * z(signal_k)` over the LLM and each retriever.

`Recommender.recommend` calls it for one user; the evaluation harness calls it for a batch of
users through `RerankerScorer`; both render, score and fuse with this code and nothing else.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.errors import InstructRecError
from instructrec.eval.metrics import target_ranks
from instructrec.instructions.notes import CandidateNotes
from instructrec.instructions.render import Renderer, RenderSettings
from instructrec.instructions.schema import Aspects, Intention, Preference
from instructrec.itemlist import ItemList
from instructrec.recommender.routing import fit_to_slot

log = logging.getLogger(__name__)

Role = Literal["history", "text", "auto", "note", "order", "prior"]
"""How a retriever reads a query: `history` (its items; skipped for an empty history), `text`
(the request text; skipped without one) or `auto` (the text where there is one, else the history);
`note`: not fused, its ranks of the candidates from the history are written into the LLM's
instruction (`instructions.notes`; for models tuned on such notes); `order`: not fused, the
candidates are listed in its order, its favourite first (for models tuned with `candidate_order`);
`prior`: not fused, its z-scored scores times the model's `prior_weight` are added to the LLM's
(for models tuned with `candidate_prior`, whose scores are a residual over that prior).
"""

Calibration = Literal["none", "pmi"]
CALIBRATIONS: tuple[str, ...] = ("none", "pmi")
CONTENT_FREE_HISTORY = ("N/A",)
"""The history shown in the calibration prompt (`RerankSettings.calibration`): the template still
reads as written (its history slot cannot be empty), but says nothing about the user."""

NOT_FUSED = ("note", "order", "prior")
"""Roles that shape the LLM's instruction or score instead of adding a fused score."""
COLLABORATIVE_ROLE = {"notes": "note", "order": "order", "prior": "prior"}
"""The role that gives a model the first-stage input it was tuned with (`LoadedModel.collaborative`)."""


@dataclass(frozen=True)
class Query:
    """What one user asks for, routed to aspects."""

    history: np.ndarray
    """Item indices the user interacted with, oldest first (may be empty)."""
    aspects: Aspects
    """The instruction's aspects (e.g. P1,I2,T3)."""
    intention: str | None = None
    """The need as the user wrote it (I1/I2), if any."""
    preference: str | None = None
    """An explicit preference as the user wrote it (P2), if any."""
    user: int = -1
    """Dataset user index for models with user vectors; -1 when unknown."""

    @property
    def text(self) -> str | None:
        """What a text retriever reads: the intention, else the stated preference."""
        return self.intention or self.preference

    @property
    def readable(self) -> bool:
        """Whether an LLM instruction can be written: something to show (history or text)."""
        return len(self.history) > 0 or self.text is not None


def task_query(aspects: Aspects, history: np.ndarray, text: str | None, user: int = -1) -> Query:
    """The query of an evaluation task: `text` is its intention (I1/I2) or else its preference (P2)."""
    has_intention = aspects.intention is not Intention.NONE
    has_pref = Preference.EXPLICIT in aspects.preference
    return Query(np.asarray(history, dtype=np.int64), aspects,
                 intention=text if has_intention else None,
                 preference=text if has_pref and not has_intention else None, user=user)


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (a constant row becomes zeros); -inf/NaN are treated as the row minimum."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.where(np.isfinite(s), s, np.nan)
    low = np.nanmin(np.where(np.isnan(finite), np.inf, finite), axis=1, keepdims=True)
    low = np.where(np.isfinite(low), low, 0.0)
    s = np.where(np.isfinite(s), s, low)
    std = s.std(axis=1, keepdims=True)
    return (s - s.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


def fuse(llm_scores: np.ndarray, retrieval_scores: np.ndarray, weight: float) -> np.ndarray:
    """`weight * z(llm) + (1 - weight) * z(retrieval)` per row."""
    return weight * standardize(llm_scores) + (1.0 - weight) * standardize(retrieval_scores)


FUSION_GRID = tuple(float(w) for w in np.round(np.linspace(0, 1, 21), 2))

FusionWeight = float | list[float]
"""A fitted fusion: the z-score mix's LLM weight (a float), or a learned stacker's weights (a list),
one per signal in `Reranker.signal_names` order: the LLM's first where there is one, then each
fused retriever's."""


def stack(signals: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """`sum_k weights[k] * z(signals[k])` per row (an all-NaN row, e.g. no LLM, adds nothing)."""
    if len(signals) != len(weights):
        raise InstructRecError(f"the stacker has {len(weights)} weights for {len(signals)} signals: "
                               "fit it again for this method's signals.")
    return sum((float(w) * standardize(s) for s, w in zip(signals, weights, strict=True)),
               np.zeros(np.shape(signals[0])))


def fit_stack_weights(signals: Sequence[np.ndarray], target_pos: np.ndarray, l2: float = 1e-3) -> list[float]:
    """The learned stacker (issue 15, lever 6): a conditional logit over the candidates of each user,
    linear in the per-user z-scores of each signal, fitted by maximum likelihood of the validation
    targets (L2 `l2` on the weights) with L-BFGS-B. Unlike the z-score mix it weighs every retriever
    on its own (the mix sums them with equal weights) and fits all weights at once; the likelihood
    is convex, so the fit has one optimum and no grid.

    The weights are non-negative (Breiman's stacked regressions, 1996): a signal can help or be
    ignored, never be turned upside down. Without that bound the stacker reads how candidates were
    drawn instead of what the user wants: on hard negatives (the first stage's top 9 non-targets)
    a negative weight on the first stage singles out the one candidate it did not pick, the
    target (HR@1 0.909 on Games, a leak of the protocol, not a recommender)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp, softmax

    target_pos = np.asarray(target_pos, dtype=np.int64)
    present = target_pos >= 0  # two-stage candidates may miss the target (-1): nothing to learn there
    x = np.stack([standardize(s) for s in signals], axis=-1)[present]  # (users, candidates, signals)
    target_pos = target_pos[present]
    if not len(x):
        raise InstructRecError("fitting the stacker needs validation users whose target is among the "
                               "candidates; none were given.")
    rows = np.arange(len(x))
    x_target = x[rows, target_pos]  # (users, signals)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ w
        value = float((logsumexp(s, axis=1) - s[rows, target_pos]).mean() + 0.5 * l2 * w @ w)
        grad = (np.einsum("uc,uck->k", softmax(s, axis=1), x) - x_target.sum(axis=0)) / len(x) + l2 * w
        return value, grad

    fit = minimize(loss, np.ones(x.shape[-1]) / x.shape[-1], jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * x.shape[-1])
    weights = [round(float(w), 4) for w in fit.x]
    log.info("stacker weights %s (validation log-likelihood %.4f per user)", weights, -fit.fun)
    return weights


def fit_fusion_weight(llm_scores: np.ndarray, retrieval_scores: np.ndarray, target_pos: np.ndarray,
                      grid: Sequence[float] = FUSION_GRID, seed: int = 0) -> float:
    """The LLM weight with the best mean NDCG@5 (ties: MRR, then the smaller weight) on validation users.

    Scores are computed once per signal; only the mix is searched, so fitting costs nothing
    beyond scoring the validation candidates.
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


class LLMScores:
    """An LLM scorer plus a bounded memo of instruction -> candidate scores.

    Evaluation scores the same users and candidates with the LLM alone and fused; the memo makes
    the second pass free. The bound keeps a long-running server's memory flat.
    """

    def __init__(self, scorer: Any, normalize: str = "mean", memo_size: int = 100_000) -> None:
        self.scorer, self.normalize, self.memo_size = scorer, normalize, memo_size
        self.candidate_labels: str = getattr(scorer, "candidate_labels", "numbers")
        """How instructions for this scorer list candidates: `letters` for the listwise head."""
        self._memo: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()

    @property
    def truncated(self) -> int:
        return int(self.scorer.truncated)

    def __call__(self, instructions: Sequence[str], titles: Sequence[Sequence[str]]) -> list[np.ndarray]:
        keys = [(text, tuple(t)) for text, t in zip(instructions, titles, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if todo:
            scores = self.scorer.score([k[0] for k in todo], [list(k[1]) for k in todo], self.normalize)
            for key, value in zip(todo, scores, strict=True):
                self._memo[key] = np.asarray(value, dtype=np.float64)
        out = []
        for key in keys:
            self._memo.move_to_end(key)
            out.append(self._memo[key])
        while len(self._memo) > self.memo_size:
            self._memo.popitem(last=False)
        return out


@dataclass
class RerankSettings:
    """How the reranker renders and mixes."""

    history_items: int = 20
    """Most recent history items shown to the LLM (the paper's 20)."""
    fusion: dict[str, FusionWeight] = field(default_factory=dict)
    """LLM weight per aspects key (e.g. `P1,I0,T3`: 0.3), fitted on validation users of that task,
    or a stacker's weights (a list, `FusionWeight`); aspects without a weight are ranked by the LLM alone."""
    permutations: int = 1
    """LLM scores averaged over this many orders of the candidates (1: the given order). More than
    one: cyclic shifts of the candidates sorted by item, so each item is shown at as many positions
    and the scores do not depend on the order the candidates came in (cancels position bias)."""
    calibration: Calibration = "none"
    """`pmi`: each candidate's LLM score minus its score under the same instruction with the history
    replaced by a content-free one (`CONTENT_FREE_HISTORY`; domain-conditional PMI, Holtzman et al.
    2021, with Zhao et al. 2021's "N/A"; issue 15 lever 4): what the history adds to a candidate's
    score, not how likely it is anyway (popular, short, generic titles). A query without history
    has nothing to remove and keeps its plain scores."""

    def __post_init__(self) -> None:
        if self.permutations < 1:
            raise InstructRecError(f"permutations must be >= 1, not {self.permutations}")
        if self.calibration not in CALIBRATIONS:
            raise InstructRecError(f"calibration must be one of {CALIBRATIONS}, not {self.calibration!r}")


def candidate_orders(candidates: np.ndarray, permutations: int) -> list[np.ndarray]:
    """The positions (into `candidates`) to show the candidates in, one array per permutation."""
    n = len(candidates)
    if permutations == 1:
        return [np.arange(n)]
    canonical = np.argsort(candidates, kind="stable")
    shifts = sorted({int(round(k * n / permutations)) % n for k in range(permutations)})
    return [np.roll(canonical, -s) for s in shifts]


class Reranker:
    """Scores candidate items for routed queries: first-stage signal, LLM, fusion (module docstring)."""

    def __init__(self, dataset: Dataset, llm: LLMScores | None = None,
                 retrievers: Sequence[tuple[Any, Role]] = (), renderer: Renderer | None = None,
                 settings: RerankSettings | None = None) -> None:
        self.dataset = dataset
        self.llm = llm
        self.retrievers = list(retrievers)
        self.renderer = renderer or Renderer(dataset)
        self.settings = settings or RerankSettings()
        loaded = getattr(getattr(llm, "scorer", None), "loaded", None)
        budget = getattr(loaded, "render", None)
        if not budget and getattr(loaded, "tuned", False):  # tuned on the default budget: that one
            budget = RenderSettings().budget()
        if budget:  # render as the model was tuned: its prompt budget wins over the caller's
            self.renderer = self.renderer.with_budget(budget)
            if "history_items" in budget:
                self.settings = replace(self.settings, history_items=int(budget["history_items"]))
        rows = getattr(getattr(getattr(llm, "scorer", None), "encoder", None), "item_rows", None)
        if rows is not None and rows != dataset.n_items:
            raise InstructRecError(f"the model {loaded.name} has item tokens for {rows} items but the dataset has "
                                   f"{dataset.n_items}; serve it with the dataset it was tuned on.")
        missing = [need for need in getattr(loaded, "collaborative", ())
                   if not any(role == COLLABORATIVE_ROLE[need] for _, role in self.retrievers)]
        if missing:
            raise InstructRecError(
                f"the model {loaded.name} was tuned on instructions with the first stage's {' and '.join(missing)}; "
                "rerank with the same: add " + " and ".join(f"+RETRIEVER@{COLLABORATIVE_ROLE[m]}" for m in missing)
                + " (e.g. llm:MODEL+sasrec@" + COLLABORATIVE_ROLE[missing[0]] + "; a recommender: notes/order/prior settings).")
        self.prior_weight = float(getattr(loaded, "prior_weight", 0.0))
        if self.prior is not None and not self.prior_weight:
            raise InstructRecError("a retriever with the role `prior` is added to the scores of a model tuned on a "
                                   "first-stage prior (candidate_prior); this model was not: drop `@prior`.")
        if self.settings.permutations > 1 and any(role == "order" for _, role in self.retrievers):
            raise InstructRecError("a retriever with the role `order` fixes the candidates' order: "
                                   "permutation averaging (*P) does not apply; drop one of them.")

    # -- the parts ---------------------------------------------------------------------------
    @property
    def notes(self) -> CandidateNotes | None:
        """The note writer of the `note` retriever, if there is one."""
        return self._writer("note")

    @property
    def order(self) -> CandidateNotes | None:
        """The ranker of the `order` retriever (the listed order of the candidates), if there is one."""
        return self._writer("order")

    @property
    def prior(self) -> CandidateNotes | None:
        """The `prior` retriever's scorer (its z-scores are added to the LLM's), if there is one."""
        return self._writer("prior")

    def _writer(self, role: str) -> CandidateNotes | None:
        found = [r for r, r_role in self.retrievers if r_role == role]
        if len(found) > 1:
            raise InstructRecError(f"one retriever at most can take the role `{role}`.")
        return CandidateNotes(found[0], "served") if found else None

    def shown_history(self, query: Query) -> np.ndarray:
        """The history items the instruction shows (the most recent `history_items`)."""
        return query.history[-self.settings.history_items:] if self.settings.history_items else query.history

    def instruction(self, query: Query, candidates: Sequence[int], notes: Sequence[str] | None = None,
                    content_free: bool = False) -> Any:
        """The T3 instruction for a query: the template of its aspects, texts fitted to the slot,
        candidates annotated with `notes` when given; `content_free` shows `CONTENT_FREE_HISTORY`
        instead of the history (the calibration prompt)."""
        template = self.renderer.template_for(query.aspects)
        specific = query.aspects.intention is Intention.SPECIFIC
        pref = query.preference if Preference.EXPLICIT in query.aspects.preference else None
        intent = query.intention if query.aspects.intention is not Intention.NONE else None
        shown: Any = list(CONTENT_FREE_HISTORY) if content_free else self.shown_history(query)
        return self.renderer.rerank(
            query.aspects, history=shown, candidates=list(candidates), template_id=template.id,
            preference=fit_to_slot(pref, "preference", template.text, False) if pref else None,
            intention=fit_to_slot(intent, "intention", template.text, specific) if intent else None,
            labels=self.llm.candidate_labels if self.llm is not None else None,  # type: ignore[arg-type]
            notes=notes,
        )

    @property
    def signal_names(self) -> list[str]:
        """The signals a stacker weighs, in the order of its weights: `llm` (if any), then each
        fused retriever as `NAME@ROLE`."""
        names = [f"{getattr(r, 'name', type(r).__name__)}@{role}" for r, role in self.retrievers if role not in NOT_FUSED]
        return (["llm"] if self.llm is not None else []) + names

    def retrieval_scores(self, queries: Sequence[Query], candidates: np.ndarray) -> np.ndarray:
        """Sum of per-user z-scores of the retrievers that apply to each query (zeros if none)."""
        return sum(self.retrieval_parts(queries, candidates), np.zeros(candidates.shape, dtype=np.float64))

    def retrieval_parts(self, queries: Sequence[Query], candidates: np.ndarray) -> list[np.ndarray]:
        """Per-user z-scores of each fused retriever (zeros for a query it does not apply to)."""
        parts = []
        users = np.asarray([q.user for q in queries], dtype=np.int64)
        for retriever, role in self.retrievers:
            if role in NOT_FUSED:
                continue
            total = np.zeros(candidates.shape, dtype=np.float64)
            parts.append(total)
            texts = [q.text if role != "history" else None for q in queries]
            by_text = np.asarray([t is not None for t in texts])
            by_hist = np.asarray([role != "text" and len(q.history) > 0 for q in queries]) & ~by_text
            for rows, with_text in ((np.flatnonzero(by_text), True), (np.flatnonzero(by_hist), False)):
                if not len(rows):
                    continue
                scores = retriever.score([queries[i].history for i in rows], candidates[rows],
                                         [texts[i] for i in rows] if with_text else None, users=users[rows])
                total[rows] += standardize(np.asarray(scores, dtype=np.float64))
        return parts

    def llm_scores(self, queries: Sequence[Query], candidates: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """LLM scores (NaN rows where nothing can be read) and the instructions (empty where none)."""
        out = np.full(candidates.shape, np.nan)
        texts = [""] * len(queries)
        if self.llm is None:
            return out, texts
        rows = [i for i, q in enumerate(queries) if q.readable]
        writer, ranker, prior = self.notes, self.order, self.prior
        notes = orders = None
        histories = [self.shown_history(queries[i]) for i in rows]
        users = np.asarray([queries[i].user for i in rows])
        if rows:
            if writer is not None:  # a note stays with its item in every order
                notes = dict(zip(rows, writer(histories, candidates[rows], users), strict=True))
            if ranker is not None:
                orders = dict(zip(rows, ranker.orders(histories, candidates[rows], users), strict=True))
        shown: list[tuple[int, np.ndarray, float]] = []  # (row, order, sign) per instruction scored
        prompts: list[str] = []
        pmi = self.settings.calibration == "pmi"
        for i in rows:
            row_orders = [orders[i]] if orders is not None else candidate_orders(candidates[i], self.settings.permutations)
            for order in row_orders:
                row_notes = [notes[i][j] for j in order] if notes is not None else None
                shown.append((i, order, 1.0))
                prompts.append(self.instruction(queries[i], candidates[i][order], row_notes).text)
                texts[i] = texts[i] or prompts[-1]  # the first order's instruction
                if pmi and len(queries[i].history):  # the same instruction without the history, subtracted
                    shown.append((i, order, -1.0))
                    prompts.append(self.instruction(queries[i], candidates[i][order], row_notes, content_free=True).text)
        if shown:
            titles = [[str(self.dataset.titles[int(j)]) for j in candidates[i][order]] for i, order, _ in shown]
            total = np.zeros(candidates.shape)
            count = np.zeros(len(candidates))
            for (i, order, sign), scores in zip(shown, self.llm(prompts, titles), strict=True):
                total[i, order] += sign * scores
                count[i] += sign > 0
            out[rows] = total[rows] / count[rows, None]
            if prior is not None:  # the model's scores are a residual over this prior (instructions.notes)
                out[rows] += self.prior_weight * prior.prior(histories, candidates[rows], users)
        return out, texts

    def stack_signals(self, llm: np.ndarray, parts: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The signals a stacker weighs, in `signal_names` order: the LLM's scores (if there is an
        LLM), then each fused retriever's z-scores (`retrieval_parts`)."""
        return ([llm] if self.llm is not None else []) + list(parts)

    def final_scores(self, queries: Sequence[Query], llm: np.ndarray, parts: Sequence[np.ndarray],
                     retrieval: np.ndarray) -> np.ndarray:
        """Final scores from the LLM's, each retriever's (`parts`) and their sum (`retrieval`)."""
        out = np.empty_like(retrieval)
        for i, q in enumerate(queries):
            weight = self.settings.fusion.get(q.aspects.key())
            row = slice(i, i + 1)
            if isinstance(weight, list):  # a learned stacker: each signal its own weight
                out[i] = stack(self.stack_signals(llm[row], [p[row] for p in parts]), weight)[0]
            elif np.isnan(llm[i]).all():
                out[i] = retrieval[i]
            else:
                out[i] = llm[i] if weight is None else fuse(llm[row], retrieval[row], weight)[0]
        return out

    # -- the path ----------------------------------------------------------------------------
    def score_batch(self, queries: Sequence[Query], candidates: np.ndarray) -> list[ItemList]:
        """One scored `ItemList` per query (candidates in the given order; `.ranked()` sorts)."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or len(candidates) != len(queries):
            raise InstructRecError(f"candidates must be a ({len(queries)}, C) array of item indices, "
                                   f"not shape {candidates.shape}.")
        if candidates.size and (candidates.min() < 0 or candidates.max() >= self.dataset.n_items):
            raise InstructRecError("a candidate is not an item index of this dataset "
                                   f"(0..{self.dataset.n_items - 1}).")
        parts = self.retrieval_parts(queries, candidates)
        retrieval = sum(parts, np.zeros(candidates.shape))
        llm, texts = self.llm_scores(queries, candidates)
        final = self.final_scores(queries, llm, parts, retrieval)
        self.last_instructions = texts
        return [ItemList(candidates[i], final[i], [str(self.dataset.titles[int(j)]) for j in candidates[i]],
                         {"llm": llm[i], "retrieval": retrieval[i]}) for i in range(len(queries))]

    def rerank(self, query: Query, candidates: ItemList, k: int | None = None) -> ItemList:
        """One user's candidates, scored and ranked best first (the serving call)."""
        return self.score_batch([query], candidates.items[None, :])[0].ranked(k)

    def with_fusion(self, fusion: dict[str, FusionWeight]) -> Reranker:
        """The same parts with other fusion weights (e.g. fitted ones)."""
        return Reranker(self.dataset, self.llm, self.retrievers, self.renderer,
                        replace(self.settings, fusion=dict(fusion)))


def fit_fusion(reranker: Reranker, queries: Sequence[Query], candidates: np.ndarray, target_pos: np.ndarray,
               seed: int = 0, batch_size: int = 64, stacked: bool = False) -> FusionWeight:
    """`reranker`'s fusion fitted on validation targets: the z-score mix's LLM weight that ranks
    them best (NDCG@5), or with `stacked` the learned stacker's weights (`fit_stack_weights`)."""
    n_signals = len(reranker.signal_names)
    if stacked and n_signals < 2:
        raise InstructRecError("a stacker needs at least two signals (the LLM and a retriever, or two retrievers).")
    if not stacked and (reranker.llm is None or n_signals < 2):
        raise InstructRecError("fusing needs an LLM and at least one retriever.")
    from instructrec import distributed

    def signals(k: int) -> list[np.ndarray]:
        sl = slice(k * batch_size, (k + 1) * batch_size)
        llm = reranker.llm_scores(queries[sl], candidates[sl])[0] if reranker.llm is not None else None
        return reranker.stack_signals(llm, reranker.retrieval_parts(queries[sl], candidates[sl]))  # type: ignore[arg-type]

    # several processes: each scores its share of the batches; every rank fits the same weights
    batches = distributed.map_batches(signals, -(-len(queries) // batch_size))
    columns = [np.concatenate([b[k] for b in batches]) for k in range(n_signals)]
    if stacked:
        return fit_stack_weights(columns, target_pos)
    llm, *parts = columns
    return fit_fusion_weight(llm, sum(parts, np.zeros(llm.shape)), target_pos, seed=seed)


class RerankerScorer:
    """The evaluation harness's Scorer protocol (`eval.protocol`) over a `Reranker` for one task."""

    def __init__(self, reranker: Reranker, aspects: str | Aspects, users: np.ndarray, name: str) -> None:
        self.reranker, self.name = reranker, name
        self.aspects = Aspects.parse(aspects) if isinstance(aspects, str) else aspects
        self.users = users
        """Dataset user index per split row (`split.users`)."""

    def queries(self, rows: np.ndarray, histories: Sequence[np.ndarray], texts: Sequence[str] | None) -> list[Query]:
        """The harness's per-row inputs as reranker queries of this task's aspects."""
        return [task_query(self.aspects, histories[i], texts[i] if texts is not None else None,
                           int(self.users[int(rows[i])])) for i in range(len(rows))]

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray], candidates: np.ndarray,
              queries: Sequence[str] | None) -> np.ndarray:
        lists = self.reranker.score_batch(self.queries(rows, histories, queries), candidates)
        return np.stack([x.scores for x in lists]) if lists else np.zeros(candidates.shape)
