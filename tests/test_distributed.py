"""Sharded evaluation equals one-process evaluation.

In-process: `FakeWorld` runs N ranks as threads (rank and world size per thread, `all_gather_object`
through a barrier), so every sharded code path is checked quickly against the one-process result.
Across processes: `torchrun --nproc_per_node 2 -m instructrec evaluate` (gloo, CPU) writes the
same metrics as `python -m instructrec evaluate` (tests/eval/test_distributed_cli.py).
"""

from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest

from instructrec import distributed
from instructrec.candidates.popularity import Popularity
from instructrec.data import leave_one_out
from instructrec.eval.candidate_sets import random_candidates
from instructrec.eval.protocol import RetrieverScorer, evaluate, full_ranking


class FakeWorld:
    """N ranks as threads of this process."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.local = threading.local()
        self.sync = threading.Barrier(n, timeout=60)
        self.slots: list = [None] * n

    def rank(self) -> int:
        return self.local.rank

    def world_size(self) -> int:
        return self.n

    def all_gather_object(self, obj):
        self.slots[self.rank()] = obj
        self.sync.wait()
        out = list(self.slots)
        self.sync.wait()
        return out

    def barrier(self) -> None:
        self.sync.wait()

    def run(self, fn):
        """`fn()` on every rank; the list of their return values."""
        results: list = [None] * self.n
        errors: list = []

        def target(r: int) -> None:
            self.local.rank = r
            try:
                results[r] = fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
                self.sync.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


@pytest.fixture
def world(monkeypatch):
    def make(n: int) -> FakeWorld:
        fw = FakeWorld(n)
        for name in ("rank", "world_size", "all_gather_object", "barrier"):
            monkeypatch.setattr(distributed, name, getattr(fw, name))
        return fw

    return make


class Tied:
    """Coarse scores with many ties, so the seeded tie-breaking matters."""

    name = "tied"

    def score(self, rows, histories, candidates, queries):
        return ((candidates * 7 + rows[:, None] * 3) % 4).astype(float)


@pytest.fixture(scope="module")
def split(synthetic_seq):
    return leave_one_out(synthetic_seq)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize(("size", "groups", "ties"), [(9, None, "random"), (9, None, "pessimistic"),
                                                      (99, 10, "random"), (99, 10, "pessimistic")])
def test_sharded_evaluate_equals_one_process(world, synthetic_seq, split, n, size, groups, ties):
    cands = random_candidates(synthetic_seq, split, np.arange(0, len(split), 3), size, seed=1)
    single = evaluate(Tied(), split, cands, groups=groups, ties=ties, seed=5, batch_size=13, progress=False)
    sharded = world(n).run(lambda: evaluate(Tied(), split, cands, groups=groups, ties=ties, seed=5,
                                            batch_size=13, progress=False))
    for res in sharded:
        np.testing.assert_array_equal(res.ranks, single.ranks)
        assert res.summary == single.summary


def test_sharded_full_ranking_and_retriever(world, synthetic_seq, split):
    pop = Popularity().fit(synthetic_seq, split)
    rows = np.arange(0, len(split), 2)
    single = full_ranking(RetrieverScorer(pop, split), split, rows, batch_size=17, seed=2, progress=False)
    for res in world(2).run(lambda: full_ranking(RetrieverScorer(pop, split), split, rows, batch_size=17,
                                                 seed=2, progress=False)):
        np.testing.assert_array_equal(res.ranks, single.ranks)


def test_map_batches_and_main_first(world):
    assert distributed.map_batches(lambda k: k * k, 5) == [0, 1, 4, 9, 16]  # one process
    fw = world(3)
    assert fw.run(lambda: distributed.map_batches(lambda k: (k, distributed.rank()), 5)) == [
        [(0, 0), (1, 1), (2, 2), (3, 0), (4, 1)]] * 3
    order: list[int] = []

    def first() -> None:
        with distributed.main_first():
            order.append(distributed.rank())

    fw.run(first)
    assert order[0] == 0 and sorted(order) == [0, 1, 2]


class HashLLM:
    """A stand-in LLM scorer: deterministic pseudo-random scores per (instruction, title)."""

    truncated = 0

    def score(self, instructions, candidates, normalize="mean"):
        return [np.array([zlib.crc32(f"{i}|{t}".encode()) % 1000 / 1000 for t in cands])
                for i, cands in zip(instructions, candidates, strict=True)]


def test_sharded_fusion_fit_gives_one_weight(world, synthetic_seq, split):
    from instructrec.eval.methods import ModelStore, parse_method
    from instructrec.eval.protocol import get_task
    from instructrec.eval.runner import fit_method_fusion, make_context

    pop = Popularity().fit(synthetic_seq, split)
    task = get_task("seqrec")
    valid = random_candidates(synthetic_seq, split, np.arange(0, 200), 9, seed=3, stage="valid")
    method = parse_method("llm+popularity")

    def fit() -> float:
        ctx = make_context(synthetic_seq, split, lambda name: pop)
        ctx.models = ModelStore("hash", loader=lambda spec: HashLLM())
        return fit_method_fusion(method, ctx, task, valid, None, seed=0)

    single = fit()
    assert world(2).run(fit) == [single, single]


def test_recipes_refuse_a_multi_process_launch(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from instructrec.cli.main import app
    from instructrec.errors import InstructRecError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.world_size() == 2 and distributed.rank() == 1 and not distributed.is_main()
    res = CliRunner().invoke(app, ["run", "builtin:quickstart", "--check"])
    assert isinstance(res.exception, InstructRecError) and "one process" in str(res.exception)
