"""One evaluation run, shared by `instructrec evaluate` and the recipe runner: fitted-retriever
store, candidate sets, fusion fitting on validation users, every method on the same candidates,
paired differences."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from instructrec import distributed
from instructrec.candidates.base import REGISTRY, Retriever, _import_all, create_retriever, load_retriever
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import InstructRecError
from instructrec.eval.candidate_sets import CandidateSet, build_candidates, parse_spec
from instructrec.eval.methods import (
    EvalContext,
    MethodSpec,
    ModelStore,
    batch_size_for,
    build_reranker,
    build_scorer,
    method_names,
    parse_method,
)
from instructrec.eval.metrics import Ties, paired_difference
from instructrec.eval.protocol import (
    EvalResult,
    Task,
    evaluate,
    full_ranking,
    get_task,
    select_rows,
    task_inputs,
)
from instructrec.eval.queries import QueryProvider, QueryTable, query_provider
from instructrec.recommender.reranker import FusionWeight

logger = logging.getLogger(__name__)


def parse_params(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`METHOD.KEY=VALUE` pairs -> {method: {key: value}} (values read as JSON, else text)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise InstructRecError(f"cannot read --param {pair!r}; write METHOD.KEY=VALUE, e.g. sasrec.epochs=5.")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(method, {})[name] = value
    return out


class RetrieverStore:
    """Fitted retrievers by name: loaded from `root/NAME` if saved there, else fitted and saved."""

    def __init__(self, dataset: Dataset, split: LeaveOneOutSplit, root: str | Path | None,
                 params: dict[str, dict[str, Any]] | None = None, refit: bool = False) -> None:
        self.dataset, self.split = dataset, split
        self.root = Path(root) if root else None
        self.params, self.refit = params or {}, refit
        self._cache: dict[str, Retriever] = {}

    def preload(self, name: str, model: Retriever) -> None:
        """Answer `name` with an already fitted retriever (e.g. a saved recommender's own)."""
        self._cache[name] = model

    def __call__(self, name: str) -> Retriever:
        if name in self._cache:
            return self._cache[name]
        path = self.root / name if self.root else None
        if path is not None and distributed.world_size() > 1:
            # several processes: rank 0 fits and saves, the others then load what it saved
            with distributed.main_first():
                return self._get(name, path, self.refit and distributed.is_main())
        return self._get(name, path, self.refit)

    def _get(self, name: str, path: Path | None, refit: bool) -> Retriever:
        if path is not None and (path / "settings.json").exists() and not refit:
            model = load_retriever(path)
            if model.n_items != self.dataset.n_items:
                raise InstructRecError(f"{path} was fitted on a dataset with {model.n_items} items, this one has "
                                       f"{self.dataset.n_items}; use another --models folder or --refit.")
            logger.info("loaded %s from %s", name, path)
            # a run killed between saving the model and removing its training checkpoint leaves
            # the checkpoint: the model is complete, so the checkpoint is spent
            (path.parent / f".{name}.checkpoint.pt").unlink(missing_ok=True)
        else:
            params = dict(self.params.get(name, {}))
            _import_all()
            ckpt = None
            if path is not None and name in REGISTRY and "checkpoint" in {
                    f.name for f in fields(REGISTRY[name].Settings)}:
                # Long torch trainings checkpoint every epoch next to the model; a rerun resumes.
                ckpt = params.setdefault("checkpoint", str(path.parent / f".{name}.checkpoint.pt"))
            model = create_retriever(name, **params)
            logger.info("fitting %s", name)
            model.fit(self.dataset, self.split)
            if path is not None:
                model.save(path)
                logger.info("saved %s to %s", name, path)
                if ckpt is not None:
                    Path(ckpt).unlink(missing_ok=True)
        self._cache[name] = model
        return model


@dataclass
class RunSettings:
    """One evaluation run (CLI `instructrec evaluate`, a recipe experiment): every setting that
    decides its figures."""

    methods: list[str]
    """Methods to evaluate (`eval.methods`): retrievers, llm[:MODEL], llm+RETRIEVER fusions, recommender."""
    task: str = "seqrec"
    """seqrec <P1,I0,T3> | search <P0,I2,T3> | psearch-i1 <P1,I1,T3> | psearch-i2 <P1,I2,T3> | psearch-p2 <P1,P2,T3>."""
    candidates: str = "random:9"
    """random:N | hard:RETRIEVER:N | groups:C[:RETRIEVER] | file:PATH (Games-6k.<retriever> format or a saved .npz set)."""
    users: int | None = None
    """Evaluate a seeded sample of this many test users (None: all)."""
    valid_users: int = 200
    """Seeded validation users on which each fused method's LLM weight is fitted (candidates drawn
    like the test set's: the same spec on the validation targets)."""
    seed: int = 0
    """Seed of the user samples, negatives, candidate positions and ties."""
    ties: Ties = "random"
    """Tie-breaking: random (seeded) | pessimistic | optimistic."""
    full_ranking: bool = False
    """Also rank the true item among all items (retrievers only)."""
    queries: str = "teacher"
    """Query texts of I1/I2/P2 tasks: teacher (the instruction teacher's, as in training) |
    title-keywords (I2: categories, else title words) | a JSONL file with user_id and query."""
    batch_size: int = 2048
    """Users scored per call by retrievers (LLM methods take at most 16)."""
    model: str | None = None
    """Model of `llm` methods: `default` (bundled SmolLM2-135M-Instruct), a training output, a model folder."""
    names: dict[str, str] = field(default_factory=dict)
    """Optional report label per method string."""


def method_specs(settings: RunSettings) -> list[MethodSpec]:
    specs = [parse_method(m, settings.names.get(m)) for m in settings.methods]
    method_names(specs)
    return specs


def test_candidates(settings: RunSettings, dataset: Dataset, split: LeaveOneOutSplit, store: RetrieverStore,
                    queries: QueryProvider | None) -> CandidateSet:
    """The test candidate set of a run: a seeded user sample (from a file's users for `file:`)."""
    spec = parse_spec(settings.candidates)
    if spec.mode == "file":
        candidates = build_candidates(spec, dataset, split, np.arange(len(split)), settings.seed, store)
        if settings.users is not None and settings.users < len(candidates):
            pick = np.random.default_rng(settings.seed).choice(len(candidates), settings.users, replace=False)
            candidates = candidates.subset(np.sort(pick))
    else:
        rows = select_rows(split, settings.users, settings.seed)
        if isinstance(queries, QueryTable):
            rows = rows[np.isin(rows, queries.rows())]
        candidates = build_candidates(spec, dataset, split, rows, settings.seed, store)
    if isinstance(queries, QueryTable):
        candidates = candidates.subset(np.isin(candidates.rows, queries.rows()))
    return candidates


def validation_candidates(settings: RunSettings, dataset: Dataset, split: LeaveOneOutSplit,
                          store: RetrieverStore, size: int) -> CandidateSet:
    """Validation users' candidates drawn like the test set's (the same spec on the validation
    targets; a `file:` set, which exists for test users only, becomes `random:size-1`)."""
    spec = parse_spec(settings.candidates)
    if spec.mode == "file":
        spec = parse_spec(f"random:{size - 1}")
    rows = select_rows(split, settings.valid_users, settings.seed + 1)
    return build_candidates(spec, dataset, split, rows, settings.seed, store, stage="valid")


def fit_method_fusion(method: MethodSpec, ctx: EvalContext, task: Task, valid: CandidateSet,
                      queries: QueryProvider | None, seed: int = 0) -> FusionWeight:
    """Fit a fused method's LLM weight (a stacker's: its weights) on validation candidates (its own
    signals, its own task)."""
    from instructrec.instructions.schema import Aspects
    from instructrec.recommender.reranker import fit_fusion, task_query

    reranker = build_reranker(method, ctx, task)
    hists, texts = task_inputs(task, ctx.split, valid.rows, valid.stage, queries, valid.targets())
    aspects = Aspects.parse(task.aspects)
    qs = [task_query(aspects, hists[i], texts[i] if texts is not None else None, int(ctx.split.users[r]))
          for i, r in enumerate(valid.rows)]
    return fit_fusion(reranker, qs, valid.items, valid.target_pos, seed=seed, stacked=method.stacked)


def make_context(dataset: Dataset, split: LeaveOneOutSplit, store: RetrieverStore, model: str | None = None,
                 recommender: Any = None, aliases: dict[str, str] | None = None,
                 history_items: int | None = None) -> EvalContext:
    """The evaluation context: retrievers from `store`, LLMs loaded on first use; `history_items`:
    the history budget of LLMs without a recorded one (None: `EvalContext`'s default)."""
    ctx = EvalContext(dataset, split, store, ModelStore(model, aliases), recommender)
    if history_items is not None:
        ctx.history_items = history_items
    return ctx


def run_evaluation(dataset: Dataset, split: LeaveOneOutSplit, settings: RunSettings, store: RetrieverStore,
                   candidates: CandidateSet | None = None, progress: bool = True,
                   ctx: EvalContext | None = None,
                   fusion_weights: dict[str, FusionWeight] | None = None) -> tuple[list[EvalResult], CandidateSet]:
    """Build (or take) the candidate set once, then evaluate every method on exactly those candidates.

    Users: all evaluated users or a seeded sample of `settings.users`; for `file:` candidates the
    sample is drawn from the file's users; with a query file only users that have a query count.
    Fused methods get their weight from `fusion_weights` (method name -> weight) or fit it on
    validation users; the weights used are recorded in each result's settings.
    """
    task = get_task(settings.task)
    specs = method_specs(settings)
    queries = query_provider(task.query, dataset, split, settings.queries, settings.seed)
    if candidates is None:
        candidates = test_candidates(settings, dataset, split, store, queries)
    ctx = ctx or make_context(dataset, split, store, settings.model)
    weights = dict(fusion_weights or {})
    valid: CandidateSet | None = None
    results = []
    for method in specs:
        weight = None
        if method.needs_fusion_weight:
            if method.name not in weights:
                valid = valid or validation_candidates(settings, dataset, split, store, candidates.size)
                valid_queries = query_provider(task.query, dataset, split, settings.queries, settings.seed, "valid")
                weights[method.name] = fit_method_fusion(method, ctx, task, valid, valid_queries, settings.seed)
            weight = weights[method.name]
        scorer = build_scorer(method, ctx, task, weight)
        spec = parse_spec(settings.candidates)
        result = evaluate(scorer, split, candidates, task, queries, spec.group_size, settings.ties, settings.seed,
                          batch_size_for(method, settings.batch_size), progress)
        result.settings.update({"method": method.text, **({"fusion_weight": weight} if weight is not None else {})})
        results.append(result)
        if settings.full_ranking and hasattr(scorer, "retriever"):
            results.append(full_ranking(scorer, split, candidates.rows, task, queries,
                                        candidates.stage, settings.ties, settings.seed, progress=progress))
    return results, candidates


PAIRED_METRICS = ("HR@1", "NDCG@5")
TWO_STAGE_METRICS = ("HR@10", "NDCG@10")
"""Also paired where the candidate lists are longer than 10 (two-stage `rerank:`), where the
catalogue-level HR@10 / NDCG@10 are the figures that count (LlamaRec's protocol)."""


def paired_differences(results: Sequence[EvalResult], metrics: Sequence[str] | None = None,
                       pairs: Sequence[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """Paired per-user differences (same users, same candidates) between methods of one candidate set:
    the given `pairs` of method names, else every pair in result order (`a - b`, a listed first).
    Metrics: `PAIRED_METRICS`, plus `TWO_STAGE_METRICS` where every result has them."""
    by = {r.method: r for r in results if r.candidates != "full"}
    if metrics is None:
        extra = [m for m in TWO_STAGE_METRICS if by and all(m in r.per_user for r in by.values())]
        metrics = (*PAIRED_METRICS, *extra)
    names = list(by)
    pairs = pairs if pairs is not None else [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out = []
    for a, b in pairs:
        if a in by and b in by:
            d = paired_difference(by[a].per_user, by[b].per_user, by[a].rows, by[b].rows)
            out.append({"a": a, "b": b, "users": int(len(by[a].rows)),
                        **{m: {k: d[m][k] for k in ("mean", "ci_low", "ci_high")} for m in metrics if m in d}})
    return out


def paired_markdown(rows: Sequence[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    if not rows:
        return ""
    metrics = metrics or [m for m in (*PAIRED_METRICS, *TWO_STAGE_METRICS) if m in rows[0]]
    lines = ["| a - b (paired, 95% CI) | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for r in rows:
        cells = [f"{r[m]['mean']:+.4f} [{r[m]['ci_low']:+.4f}, {r[m]['ci_high']:+.4f}]" if m in r else ""
                 for m in metrics]
        lines.append(f"| {r['a']} - {r['b']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
