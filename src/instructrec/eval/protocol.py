"""The paper's evaluation protocol: tasks, the Scorer protocol and the evaluation harness.

Tasks (InstructRec, Table 3): the instruction aspects say what a scorer gets per user.

| task | aspects | history | query |
|---|---|---|---|
| `seqrec` | <P1,I0,T3> | yes | - |
| `search` | <P0,I2,T3> | - | specific intention (I2) |
| `psearch-i1` | <P1,I1,T3> | yes | vague intention (I1) |
| `psearch-i2` | <P1,I2,T3> | yes | specific intention (I2) |
| `psearch-p2` | <P1,P2,T3> | yes | explicit preference (P2) |

I2 queries default to `queries.TitleKeywordQueries` (the target's categories, or its title's
words where items have no categories, as on Games); I1 and P2 texts come from the instruction
generator through a query provider (`queries.QueryTable`).

**Scorer protocol.** Anything that ranks candidates plugs in by providing

    name: str
    score(rows, histories, candidates, queries) -> np.ndarray  # shape (B, C), higher is better

where `rows` are leave-one-out split rows (`split.users[rows]` are dataset user indices, useful to
look up instructions), `histories` the users' item-index arrays (oldest first; empty for tasks
without preference), `candidates` an int array (B, C) of item indices and `queries` a list of B
strings or None. Retrievers plug in through `RetrieverScorer`; an LLM reranker or a fusion
implements the same method. A scorer that also has `retriever` (a `candidates.base.Retriever`)
can be evaluated by full ranking over all items.

**Groups.** With `groups=10` the C candidates are cut into C/10 groups of 10 in their stored
order; the scorer is called once per group (each row repeated), the best of each group wins, and
the winners are scored again together. The final ranking is the winners by their second score,
then every other candidate by its first-round score. Ties anywhere follow `metrics.target_ranks`.

**Several processes.** Under `torchrun` / `accelerate launch` (`instructrec.distributed`) the
batches of users are dealt out to the ranks round-robin; each rank scores and ranks its batches
with exactly the calls a one-process run makes (the tie-breaking generator is advanced past the
other ranks' batches, `_skip`), and the ranks are gathered on every rank, so every rank returns
the one-process result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from instructrec import distributed
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import InstructRecError
from instructrec.eval.candidate_sets import CandidateSet
from instructrec.eval.metrics import (
    Ties,
    metric_ks,
    per_user_metrics,
    ranks_from_counts,
    summarize,
    target_ranks,
)
from instructrec.eval.queries import QueryProvider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """What a scorer sees for one evaluation task."""

    name: str
    aspects: str
    history: bool
    query: Literal["I1", "I2", "P2"] | None


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("seqrec", "<P1,I0,T3>", True, None),
        Task("search", "<P0,I2,T3>", False, "I2"),
        Task("psearch-i1", "<P1,I1,T3>", True, "I1"),
        Task("psearch-i2", "<P1,I2,T3>", True, "I2"),
        Task("psearch-p2", "<P1,P2,T3>", True, "P2"),
    )
}


def get_task(name: str) -> Task:
    """A task by name or by its aspects (e.g. `P1,I2,T3` or `<P0,I2,T3>`)."""
    if name in TASKS:
        return TASKS[name]
    key = "<" + name.strip("<>").replace(" ", "").upper() + ">"
    for task in TASKS.values():
        if task.aspects == key:
            return task
    raise InstructRecError(f"unknown task {name!r}; choose one of {sorted(TASKS)} or their aspects "
                           f"{[t.aspects for t in TASKS.values()]}.")


@runtime_checkable
class Scorer(Protocol):
    """Scores candidate items per evaluated user (see the module docstring)."""

    name: str

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray], candidates: np.ndarray,
              queries: Sequence[str] | None) -> np.ndarray: ...


class RetrieverScorer:
    """Adapts a fitted `Retriever` to the Scorer protocol."""

    def __init__(self, retriever: Any, split: LeaveOneOutSplit, name: str | None = None) -> None:
        self.retriever, self.split = retriever, split
        self.name = name or retriever.name

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray], candidates: np.ndarray | None,
              queries: Sequence[str] | None) -> np.ndarray:
        n = getattr(self.retriever, "n_items", None)
        if candidates is not None and n is not None and candidates.size and (
                candidates.min() < 0 or candidates.max() >= n):
            raise InstructRecError(f"a candidate is not an item index of {self.name}'s catalogue (0..{n - 1}).")
        return self.retriever.score(histories, candidates, queries, users=self.split.users[rows])


def select_rows(split: LeaveOneOutSplit, users: int | None = None, seed: int = 0) -> np.ndarray:
    """All evaluated users' rows, or a seeded sample of `users` of them (sorted)."""
    if users is None or users >= len(split):
        return np.arange(len(split), dtype=np.int64)
    if users <= 0:
        raise InstructRecError("--users must be a positive number of users.")
    return np.sort(np.random.default_rng(seed).choice(len(split), size=users, replace=False))


@dataclass
class EvalResult:
    """Per-user ranks and metrics of one method on one task and candidate set."""

    method: str
    task: str
    candidates: str
    rows: np.ndarray
    ranks: np.ndarray
    per_user: dict[str, np.ndarray]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        return summarize(self.per_user)


def task_inputs(task: Task, split: LeaveOneOutSplit, rows: np.ndarray, stage: str,
            queries: QueryProvider | None, targets: np.ndarray) -> tuple[list[np.ndarray], list[str] | None]:
    if task.history:
        hists = [split.history(int(r), stage) for r in rows]
    else:
        hists = [np.zeros(0, dtype=np.int64) for _ in rows]
    if task.query is None:
        return hists, None
    if queries is None:
        raise InstructRecError(f"task {task.name} {task.aspects} needs {task.query} query texts; "
                               "pass a query provider (--queries FILE).")
    return hists, queries(rows, targets)


def evaluate(scorer: Scorer, split: LeaveOneOutSplit, candidates: CandidateSet, task: str | Task = "seqrec",
             queries: QueryProvider | None = None, groups: int | None = None, ties: Ties = "random",
             seed: int = 0, batch_size: int = 2048, progress: bool = True) -> EvalResult:
    """Rank each user's candidates with `scorer`; return per-user ranks and metrics."""
    task = get_task(task) if isinstance(task, str) else task
    n, size = len(candidates), candidates.size
    if groups and (size % groups or size // groups < 2):
        raise InstructRecError(f"{size} candidates cannot be cut into groups of {groups}.")
    rng = np.random.default_rng(seed)
    ranks = np.empty(n, dtype=np.int64)
    started = time.monotonic()
    targets = candidates.targets()
    mine = _owned_batches(n, batch_size)
    bar = tqdm(total=sum(len(candidates.rows[s]) for s in mine.values()), desc=f"{scorer.name} {task.name}",
               disable=not progress or not distributed.is_main(), leave=False)
    for k, start in enumerate(range(0, n, batch_size)):
        sl = slice(start, start + batch_size)
        if k not in mine:  # another rank's batch: draw what it draws, so the next batch's ties match
            _skip(rng, _tie_draws(len(candidates.rows[sl]), size, groups, ties))
            continue
        rows, items, tpos = candidates.rows[sl], candidates.items[sl], candidates.target_pos[sl]
        hists, texts = task_inputs(task, split, rows, candidates.stage, queries, targets[sl])
        if groups:
            ranks[sl] = _group_ranks(scorer, rows, hists, items, tpos, texts, groups, ties, rng)
        else:
            scores = np.asarray(scorer.score(rows, hists, items, texts), dtype=np.float64)
            if scores.shape != items.shape:
                raise InstructRecError(f"{scorer.name} returned scores of shape {scores.shape} for "
                                       f"candidates of shape {items.shape}.")
            ranks[sl] = target_ranks(scores, tpos, ties, rng)
        bar.update(len(rows))
    bar.close()
    ranks = _gather_ranks(ranks, mine)
    return EvalResult(scorer.name, task.name, candidates.spec, candidates.rows, ranks,
                      per_user_metrics(ranks, *metric_ks(size)),
                      time.monotonic() - started,
                      {"ties": ties, "seed": seed, "groups": groups, "stage": candidates.stage,
                       "candidate_seed": candidates.seed, "aspects": task.aspects})


def _owned_batches(n: int, batch_size: int) -> dict[int, slice]:
    """This rank's batches (all of them in a one-process run): batch number -> rows."""
    return {k: slice(start, start + batch_size) for k, start in enumerate(range(0, n, batch_size))
            if distributed.owns(k)}


def _tie_draws(b: int, size: int, groups: int | None, ties: Ties) -> int:
    """Numbers the tie-breaking generator draws for a batch of `b` users with `size` candidates:
    one per user for random ties (`metrics.ranks_from_counts`), plus one per candidate for the
    group winners' jitter (`_group_ranks`). Kept next to the code that draws them."""
    return (b * size if groups else 0) + (b if ties == "random" else 0)


def _skip(rng: np.random.Generator, count: int, chunk: int = 1 << 20) -> None:
    """Advance `rng` as if it had drawn `count` uniform floats."""
    while count > 0:
        rng.random(min(count, chunk))
        count -= chunk


def _gather_ranks(ranks: np.ndarray, mine: dict[int, slice]) -> np.ndarray:
    """Every rank's batches' ranks assembled on every rank (the array itself in a one-process run)."""
    if distributed.world_size() == 1:
        return ranks
    parts = distributed.all_gather_object({k: (sl.start, ranks[sl]) for k, sl in mine.items()})
    out = np.empty_like(ranks)
    filled = 0
    for part in parts:
        for start, values in part.values():
            out[start:start + len(values)] = values
            filled += len(values)
    if filled != len(out):
        raise InstructRecError(f"gathered the ranks of {filled} users, expected {len(out)}.")
    return out


def _group_ranks(scorer: Scorer, rows: np.ndarray, hists: list[np.ndarray], items: np.ndarray,
                 tpos: np.ndarray, texts: list[str] | None, groups: int, ties: Ties,
                 rng: np.random.Generator) -> np.ndarray:
    b, size = items.shape
    n_groups = size // groups
    rep = np.repeat(np.arange(b), n_groups)
    first = scorer.score(rows[rep], [hists[i] for i in rep], items.reshape(b * n_groups, groups),
                         [texts[i] for i in rep] if texts is not None else None)
    first = np.where(np.isnan(first), -np.inf, np.asarray(first, dtype=np.float64)).reshape(b, n_groups, groups)
    # Winner per group; ties inside a group follow the tie policy (random: seeded jitter).
    jitter = rng.random(first.shape)
    t_group, t_col = tpos // groups, tpos % groups
    if ties != "random":
        jitter[np.arange(b), t_group, t_col] = -1.0 if ties == "pessimistic" else 2.0
    win_col = np.lexsort((jitter, first), axis=-1)[..., -1]
    winners = np.take_along_axis(items.reshape(b, n_groups, groups), win_col[..., None], -1)[..., 0]
    second = np.asarray(scorer.score(rows, hists, winners, texts), dtype=np.float64)
    won = win_col[np.arange(b), t_group] == t_col
    ranks = np.empty(b, dtype=np.int64)
    if won.any():
        ranks[won] = target_ranks(second[won], t_group[won], ties, rng)
    lost = ~won
    if lost.any():
        flat = first[lost].reshape(lost.sum(), size)
        is_winner = np.zeros_like(flat, dtype=bool)
        idx = np.arange(n_groups) * groups + win_col[lost]
        is_winner[np.arange(lost.sum())[:, None], idx] = True
        t = flat[np.arange(lost.sum()), tpos[lost]][:, None]
        others = ~is_winner
        others[np.arange(lost.sum()), tpos[lost]] = False
        higher = ((flat > t) & others).sum(1)
        equal = ((flat == t) & others).sum(1)
        ranks[lost] = n_groups + ranks_from_counts(higher, equal, ties, rng)
    return ranks


def full_ranking(scorer: Any, split: LeaveOneOutSplit, rows: np.ndarray, task: str | Task = "seqrec",
                 queries: QueryProvider | None = None, stage: str = "test", ties: Ties = "random",
                 seed: int = 0, batch_size: int = 1024, progress: bool = True) -> EvalResult:
    """Rank the true item among ALL items (items in the user's history excluded), for retrievers."""
    task = get_task(task) if isinstance(task, str) else task
    retriever = getattr(scorer, "retriever", scorer)
    if not hasattr(retriever, "n_items"):
        raise InstructRecError(f"{scorer.name} cannot rank all items; full ranking is for retrievers.")
    rows = np.asarray(rows, dtype=np.int64)
    targets = (split.test_target if stage == "test" else split.valid_target)[rows]
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(rows), dtype=np.int64)
    started = time.monotonic()
    mine = _owned_batches(len(rows), batch_size)
    bar = tqdm(total=sum(len(rows[s]) for s in mine.values()), desc=f"{scorer.name} full ranking",
               disable=not progress or not distributed.is_main(), leave=False)
    for k, start in enumerate(range(0, len(rows), batch_size)):
        sl = slice(start, start + batch_size)
        chunk = rows[sl]
        if k not in mine:
            _skip(rng, _tie_draws(len(chunk), 0, None, ties))
            continue
        hists, texts = task_inputs(task, split, chunk, stage, queries, targets[sl])
        scores = np.asarray(retriever.score(hists, None, texts, users=split.users[chunk]), dtype=np.float64)
        valid = np.ones(scores.shape, dtype=bool)
        for i, r in enumerate(chunk):
            valid[i, split.history(int(r), stage)] = False
        ranks[sl] = target_ranks(scores, targets[sl], ties, rng, valid=valid)
        bar.update(len(chunk))
    bar.close()
    ranks = _gather_ranks(ranks, mine)
    name = getattr(scorer, "name", retriever.name)
    return EvalResult(name, task.name, "full", rows, ranks, per_user_metrics(ranks, (1, 5, 10, 20), (5, 10, 20)),
                      time.monotonic() - started, {"ties": ties, "seed": seed, "stage": stage,
                                                   "aspects": task.aspects, "seen_items": "excluded"})
