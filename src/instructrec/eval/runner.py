"""Glue for the CLI and scripts: fitted-retriever store, scorer registry and a full evaluation run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from instructrec.candidates.base import REGISTRY, Retriever, _import_all, create_retriever, load_retriever
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import InstructRecError
from instructrec.eval.candidate_sets import CandidateSet, build_candidates, parse_spec
from instructrec.eval.metrics import Ties
from instructrec.eval.protocol import (
    EvalResult,
    RetrieverScorer,
    Scorer,
    evaluate,
    full_ranking,
    get_task,
    select_rows,
)
from instructrec.eval.queries import QueryProvider, QueryTable, TitleKeywordQueries

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

    def __call__(self, name: str) -> Retriever:
        if name in self._cache:
            return self._cache[name]
        path = self.root / name if self.root else None
        if path is not None and (path / "settings.json").exists() and not self.refit:
            model = load_retriever(path)
            if model.n_items != self.dataset.n_items:
                raise InstructRecError(f"{path} was fitted on a dataset with {model.n_items} items, this one has "
                                       f"{self.dataset.n_items}; use another --models folder or --refit.")
            logger.info("loaded %s from %s", name, path)
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


ScorerFactory = Callable[["EvalContext"], Scorer]
SCORERS: dict[str, ScorerFactory] = {}
"""Extra methods for `instructrec evaluate --method` (e.g. an LLM reranker): name -> factory."""


def register_scorer(name: str, factory: ScorerFactory) -> None:
    """Make `--method NAME` build a scorer with `factory(context)`."""
    SCORERS[name] = factory


@dataclass
class EvalContext:
    """What a scorer factory may need."""

    dataset: Dataset
    split: LeaveOneOutSplit
    retrievers: RetrieverStore
    params: dict[str, Any] = field(default_factory=dict)


def make_scorer(name: str, ctx: EvalContext) -> Scorer:
    _import_all()
    if name in SCORERS:
        return SCORERS[name](ctx)
    if name in REGISTRY:
        return RetrieverScorer(ctx.retrievers(name), ctx.split, name)
    raise InstructRecError(f"unknown method {name!r}; choose from {sorted(REGISTRY) + sorted(SCORERS)}.")


def query_provider(task_name: str, dataset: Dataset, split: LeaveOneOutSplit, queries_file: str | Path | None,
                   seed: int) -> QueryProvider | None:
    task = get_task(task_name)
    if queries_file is not None:
        return QueryTable.from_jsonl(dataset, split, queries_file)
    if task.query == "I2":
        return TitleKeywordQueries(dataset, seed=seed)
    if task.query is not None:
        raise InstructRecError(f"task {task.name} {task.aspects} needs {task.query} texts per user: "
                               "pass --queries FILE (JSONL with user_id and query).")
    return None


@dataclass
class RunSettings:
    """Everything needed to reproduce an evaluation run."""

    methods: list[str]
    task: str = "seqrec"
    candidates: str = "random:9"
    users: int | None = None
    seed: int = 0
    ties: Ties = "random"
    full_ranking: bool = False
    queries: str | None = None
    batch_size: int = 2048


def run_evaluation(dataset: Dataset, split: LeaveOneOutSplit, settings: RunSettings, store: RetrieverStore,
                   candidates: CandidateSet | None = None,
                   progress: bool = True) -> tuple[list[EvalResult], CandidateSet]:
    """Build (or take) the candidate set once, then evaluate every method on exactly those candidates.

    Users: all evaluated users or a seeded sample of `settings.users`; for `file:` candidates the
    sample is drawn from the file's users; with a query file only users that have a query count.
    """
    spec = parse_spec(settings.candidates)
    queries = query_provider(settings.task, dataset, split, settings.queries, settings.seed)
    if candidates is None:
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
    ctx = EvalContext(dataset, split, store)
    results = []
    for method in settings.methods:
        scorer = make_scorer(method, ctx)
        results.append(evaluate(scorer, split, candidates, settings.task, queries, spec.group_size, settings.ties,
                                settings.seed, settings.batch_size, progress))
        if settings.full_ranking and hasattr(scorer, "retriever"):
            results.append(full_ranking(scorer, split, candidates.rows, settings.task, queries,
                                        candidates.stage, settings.ties, settings.seed, progress=progress))
    return results, candidates
