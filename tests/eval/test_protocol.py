"""The evaluation harness: Scorer protocol, tasks, groups, full ranking, reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instructrec.candidates.popularity import Popularity
from instructrec.data import leave_one_out
from instructrec.errors import InstructRecError
from instructrec.eval.candidate_sets import CandidateSet, random_candidates
from instructrec.eval.protocol import RetrieverScorer, Scorer, evaluate, full_ranking, get_task, select_rows
from instructrec.eval.queries import QueryTable, TitleKeywordQueries, content_words
from instructrec.eval.report import markdown_table, write_report


class Oracle:
    """Knows the true items: scores them 1, everything else 0."""

    name = "oracle"

    def __init__(self, split):
        self.split, self.calls = split, []

    def score(self, rows, histories, candidates, queries):
        self.calls.append((candidates.shape, queries))
        return (candidates == self.split.test_target[rows][:, None]).astype(float)


class Constant:
    name = "constant"

    def score(self, rows, histories, candidates, queries):
        return np.zeros(candidates.shape)


@pytest.fixture(scope="module")
def split(synthetic_seq):
    return leave_one_out(synthetic_seq)


@pytest.fixture(scope="module")
def cands(synthetic_seq, split):
    return random_candidates(synthetic_seq, split, np.arange(len(split)), 9, seed=0)


def test_scorer_protocol_oracle_and_constant(split, cands):
    assert isinstance(Oracle(split), Scorer)
    res = evaluate(Oracle(split), split, cands, progress=False)
    assert res.summary["HR@1"]["mean"] == 1.0 and res.summary["MRR"]["mean"] == 1.0
    const = evaluate(Constant(), split, cands, ties="pessimistic", progress=False)
    assert (const.ranks == 10).all()
    rand = evaluate(Constant(), split, cands, ties="random", seed=0, progress=False)
    assert 0.03 < rand.summary["HR@1"]["mean"] < 0.2
    assert res.settings["seed"] == 0 and res.settings["aspects"] == "<P1,I0,T3>"


def test_groups_call_scorer_per_group_then_on_winners(synthetic_seq, split):
    c = random_candidates(synthetic_seq, split, np.arange(50), 99, seed=0)
    oracle = Oracle(split)
    res = evaluate(oracle, split, c, groups=10, batch_size=25, progress=False)
    assert res.summary["HR@1"]["mean"] == 1.0
    shapes = [s for s, _ in oracle.calls]
    assert shapes == [(250, 10), (25, 10), (250, 10), (25, 10)]
    pess = evaluate(Constant(), split, c, groups=10, ties="pessimistic", progress=False)
    assert (pess.ranks == 100).all()


def test_group_rank_of_a_losing_target():
    class Fixed:
        name = "fixed"

        def score(self, rows, histories, candidates, queries):
            return candidates.astype(float)  # higher item index = better

    # 20 candidates in 2 groups; target item 5 sits in group 0 and loses to item 9.
    items = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]])
    cset = CandidateSet(np.array([0]), items, np.array([5]), "t", 0)

    class FakeSplit:
        test_target = np.array([5])
        users = np.array([0])

        def history(self, row, stage, max_len=None):
            return np.zeros(0, dtype=np.int64)

    res = evaluate(Fixed(), FakeSplit(), cset, groups=10, progress=False)
    # Winners 19 and 9 come first; then by first-round score 18..10, 8, 7, 6 above item 5.
    assert res.ranks.tolist() == [2 + 9 + 3 + 1]


def test_popularity_through_retriever_scorer_and_full_ranking(synthetic_seq, split, cands):
    pop = Popularity().fit(synthetic_seq, split)
    scorer = RetrieverScorer(pop, split)
    res = evaluate(scorer, split, cands, progress=False)
    assert res.method == "popularity" and len(res.ranks) == len(split)
    full = full_ranking(scorer, split, np.arange(len(split)), progress=False)
    # Seen items are excluded: a rank can never exceed the unseen catalogue + 1.
    worst = [synthetic_seq.n_items - len(split.history(r, "test")) for r in range(len(split))]
    assert (full.ranks <= np.array(worst)).all()
    assert "HR@10" in full.per_user and full.candidates == "full"


def test_tasks_and_queries(synthetic_seq, split, cands):
    assert get_task("P0,I2,T3").name == "search" and get_task("<P1,P2,T3>").name == "psearch-p2"
    with pytest.raises(InstructRecError):
        get_task("P9")
    oracle = Oracle(split)
    with pytest.raises(InstructRecError, match="needs I2"):
        evaluate(oracle, split, cands, task="search", progress=False)
    kw = TitleKeywordQueries(synthetic_seq, n_words=2, seed=0)
    evaluate(oracle, split, cands, task="search", queries=kw, batch_size=10_000, progress=False)
    queries = oracle.calls[-1][1]
    for q, t in zip(queries[:20], split.test_target[:20]):
        words = q.split()
        assert len(words) == 2 and set(words) <= set(content_words(synthetic_seq.title(t)))
    assert content_words("The Legend of Zelda: Breath of the Wild - Nintendo Switch") == \
        ["legend", "zelda", "breath", "wild", "nintendo", "switch"]
    table = QueryTable(synthetic_seq, split, {synthetic_seq.user_ids[split.users[0]]: "a gift for my son"})
    assert table.rows().tolist() == [0] and table(np.array([0]), None) == ["a gift for my son"]
    with pytest.raises(InstructRecError, match="no query"):
        table(np.array([1]), None)


def test_select_rows_seeded(split):
    a, b = select_rows(split, 40, seed=1), select_rows(split, 40, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 40
    assert len(select_rows(split, None)) == len(split)


def test_report_files(tmp_path, split, cands):
    results = [evaluate(Oracle(split), split, cands, progress=False),
               evaluate(Constant(), split, cands, progress=False)]
    paths = write_report(results, tmp_path, {"seed": 0, "candidates": "random:9"}, title="t")
    doc = json.loads(paths["json"].read_text())
    assert doc["settings"]["seed"] == 0 and doc["results"][0]["metrics"]["HR@1"]["mean"] == 1.0
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG"
    assert "| oracle | seqrec | random:9 |" in markdown_table(results)
    import pandas as pd

    per_user = pd.read_parquet(paths["per_user"])
    assert len(per_user) == 2 * len(split) and {"rank", "HR@1", "MRR"} <= set(per_user.columns)
