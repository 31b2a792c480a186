"""Candidate sets: negatives never seen by the user, file parsing, save/load, the real Games files."""

from __future__ import annotations

import numpy as np
import pytest

from instructrec.candidates.popularity import Popularity
from instructrec.data import leave_one_out
from instructrec.errors import DataError, InstructRecError
from instructrec.eval.candidate_sets import (
    CandidateSet,
    build_candidates,
    parse_spec,
    random_candidates,
    read_candidate_file,
    retriever_candidates,
)


@pytest.fixture(scope="module")
def split(synthetic_seq):
    return leave_one_out(synthetic_seq)


def test_random_negatives_never_seen_and_seeded(synthetic_seq, split):
    rows = np.arange(len(split))
    c = random_candidates(synthetic_seq, split, rows, n_neg=9, seed=3)
    assert c.items.shape == (len(split), 10)
    assert np.array_equal(c.targets(), split.test_target)
    for i, row in enumerate(rows):
        seq = set(synthetic_seq.sequences[split.users[row]].tolist())
        negs = np.delete(c.items[i], c.target_pos[i])
        assert len(set(negs.tolist())) == 9
        assert not seq & set(negs.tolist())
    again = random_candidates(synthetic_seq, split, rows, n_neg=9, seed=3)
    assert np.array_equal(c.items, again.items) and np.array_equal(c.target_pos, again.target_pos)
    other = random_candidates(synthetic_seq, split, rows, n_neg=9, seed=4)
    assert not np.array_equal(c.items, other.items)
    # The true item's position is spread over all slots, not fixed.
    assert len(np.unique(c.target_pos)) == 10


def test_hard_negatives_are_the_best_unseen_items(synthetic_seq, split):
    pop = Popularity().fit(synthetic_seq, split)
    rows = np.arange(20)
    c = retriever_candidates(synthetic_seq, split, rows, 5, pop, seed=0, name="popularity")
    order = np.argsort(-pop.counts, kind="stable")
    for i, row in enumerate(rows):
        seen = set(synthetic_seq.sequences[split.users[row]].tolist())
        negs = np.delete(c.items[i], c.target_pos[i])
        assert not seen & set(negs.tolist())
        expected_counts = sorted(pop.counts[[j for j in order if j not in seen][:5]], reverse=True)
        assert sorted(pop.counts[negs], reverse=True) == expected_counts
    assert c.spec == "hard:popularity:5"


def test_parse_spec():
    assert parse_spec("random:9").n == 9
    assert parse_spec("hard:sasrec:19").retriever == "sasrec"
    g = parse_spec("groups:100")
    assert (g.mode, g.n, g.group_size) == ("groups", 100, 10)
    assert parse_spec("file:/a/b:c").path == "/a/b:c"
    for bad in ("random:x", "groups:55", "nope", "hard"):
        with pytest.raises(InstructRecError):
            parse_spec(bad)


def test_groups_spec_builds_100_candidates(synthetic_seq, split):
    c = build_candidates("groups:100", synthetic_seq, split, np.arange(10), seed=0)
    assert c.items.shape == (10, 100) and c.spec == "groups:100"


def _write_file(tmp_path, ds, split, rows, width=6, include_target_for=()):
    lines = []
    rng = np.random.default_rng(0)
    for r in rows:
        ids = [ds.item_ids[j] for j in rng.choice(ds.n_items, width, replace=False)
               if j != split.test_target[r]][:width - 1]
        target = ds.item_ids[split.test_target[r]]
        ids.insert(2, target if r in include_target_for else ds.item_ids[(split.test_target[r] + 1) % ds.n_items])
        lines.append(f"{ds.user_ids[split.users[r]]}\t{' '.join(ids)}")
    lines.append("unknown-user\t" + " ".join(ds.item_ids[:width]))
    path = tmp_path / "cands.bpr"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_candidate_file_parsing_inserts_missing_target(tmp_path, synthetic_seq, split):
    rows = [0, 1, 2, 3]
    path = _write_file(tmp_path, synthetic_seq, split, rows, include_target_for=(1, 3))
    c = read_candidate_file(synthetic_seq, split, path, seed=0)
    assert c.rows.tolist() == rows and c.items.shape == (4, 6)
    assert np.array_equal(c.targets(), split.test_target[rows])
    assert c.target_pos[1] == 2 and c.target_pos[3] == 2  # present: kept where it was
    assert c.info["target_inserted"] == 2 and c.info["skipped_users"] == 1
    raw = [line.split("\t")[1].split() for line in path.read_text().splitlines()[:4]]
    for i in (0, 2):  # absent: replaced exactly one candidate, the rest unchanged
        ids = [synthetic_seq.item_ids[j] for j in c.items[i]]
        assert sum(a != b for a, b in zip(ids, raw[i])) == 1


def test_candidate_file_errors(tmp_path, synthetic_seq, split):
    bad = tmp_path / "bad"
    bad.write_text("u0 i1 i2\n")
    with pytest.raises(DataError, match="expected"):
        read_candidate_file(synthetic_seq, split, bad)
    ragged = tmp_path / "ragged"
    ragged.write_text("u0\ti1 i2\nu1\ti1\n")
    with pytest.raises(DataError, match="same number"):
        read_candidate_file(synthetic_seq, split, ragged)
    nobody = tmp_path / "nobody"
    nobody.write_text("x\ti1 i2\n")
    with pytest.raises(DataError, match="none of its users"):
        read_candidate_file(synthetic_seq, split, nobody)
    with pytest.raises(DataError, match="does not exist"):
        read_candidate_file(synthetic_seq, split, tmp_path / "missing")


def test_save_load_round_trip_and_check(tmp_path, synthetic_seq, split):
    c = random_candidates(synthetic_seq, split, np.arange(30), 9, seed=1)
    path = c.save(tmp_path / "set")
    back = CandidateSet.load(path)
    assert np.array_equal(back.items, c.items) and np.array_equal(back.rows, c.rows)
    assert (back.spec, back.seed, back.stage) == ("random:9", 1, "test")
    back.check(synthetic_seq, split)
    same = build_candidates(f"file:{path}", synthetic_seq, split, np.arange(len(split)))
    assert np.array_equal(same.items, c.items)
    wrong = CandidateSet(c.rows, c.items.copy(), (c.target_pos + 1) % 10, c.spec, 1)
    with pytest.raises(DataError, match="true items differ"):
        wrong.check(synthetic_seq, split)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a saved candidate set"):
        CandidateSet.load(tmp_path / "junk.npz")


def test_games_candidate_files(games, games_dir):
    split = leave_one_out(games)
    found = {"random": 33, "pop": 508, "bpr": 1357}  # per the data README
    for name, present in found.items():
        c = read_candidate_file(games, split, games_dir / f"Games-6k.{name}", seed=0)
        assert c.items.shape == (6000, 100)
        assert 6000 - c.info["target_inserted"] == present
        assert np.array_equal(c.targets(), split.test_target[c.rows])


def test_rerank_candidates_are_the_retrievers_top_with_the_target_only_where_found(tmp_path, synthetic_seq, split):
    from instructrec.eval.candidate_sets import rerank_candidates
    from instructrec.eval.metrics import ABSENT_RANK
    from instructrec.eval.protocol import RetrieverScorer, evaluate

    pop = Popularity().fit(synthetic_seq, split)
    rows = np.arange(len(split))
    c = rerank_candidates(synthetic_seq, split, rows, 20, pop, name="popularity")
    assert c.spec == "rerank:popularity:20" and c.items.shape == (len(rows), 20)
    assert np.array_equal(c.targets(), split.test_target)  # the truth, found or not
    order = np.argsort(-pop.counts, kind="stable")
    found = c.target_pos >= 0
    assert found.any() and (~found).any()
    for i, row in enumerate(rows[:30]):
        hist = set(split.history(int(row), "test").tolist())
        assert not hist & set(c.items[i].tolist())
        assert sorted(pop.counts[c.items[i]], reverse=True) == sorted(
            pop.counts[[j for j in order if j not in hist][:20]], reverse=True)
        if found[i]:
            assert c.items[i, c.target_pos[i]] == split.test_target[row]
        else:
            assert split.test_target[row] not in c.items[i]
    assert c.info["target_found"] == int(found.sum())
    # judged on the full catalogue: a missing target is a miss at every k; k = 10 is reported
    result = evaluate(RetrieverScorer(pop, split, "popularity"), split, c, progress=False)
    assert (result.ranks[~found] == ABSENT_RANK).all() and (result.ranks[found] <= 20).all()
    assert result.per_user["HR@10"][~found].sum() == 0 and "NDCG@10" in result.per_user
    assert result.summary["HR@10"]["mean"] <= found.mean()
    again = CandidateSet.load(c.save(tmp_path / "rr.npz"))
    assert np.array_equal(again.truth, c.truth) and np.array_equal(again.target_pos, c.target_pos)
    again.check(synthetic_seq, split)
    sub = c.subset(np.arange(5))
    assert np.array_equal(sub.targets(), c.targets()[:5])
    assert parse_spec("rerank:sasrec:20") == parse_spec("rerank:sasrec:20")
    assert (parse_spec("rerank:sasrec:20").mode, parse_spec("rerank:sasrec:20").n) == ("rerank", 20)
    for bad in ("rerank:sasrec", "rerank::20", "rerank:sasrec:1"):
        with pytest.raises(InstructRecError):
            parse_spec(bad)
