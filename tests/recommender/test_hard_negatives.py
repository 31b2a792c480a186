"""Hard training negatives (`instructions.negatives`, issue 15 lever 3): a share of each example's
negatives comes from a first stage's favourites for the example's own history."""

from __future__ import annotations

import random

import numpy as np
import pytest

from instructrec.errors import InstructRecError
from instructrec.training.data import load_instruction_records


@pytest.fixture(scope="module")
def popularity(toy_dataset):
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out

    return create_retriever("popularity").fit(toy_dataset, leave_one_out(toy_dataset))


def _build(dataset, out, negatives, n_candidates=5):
    from instructrec.instructions.builder import BuildSettings, build_instructions, fingerprint
    from instructrec.instructions.render import RenderSettings
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates

    library = load_templates().select(["pref-rerank-history"])
    teacher = ExtractiveTeacher().fit(dataset)
    render = RenderSettings(n_candidates=n_candidates, history_items=3)
    settings = BuildSettings(max_examples=40, render=render, negatives=negatives)
    build_instructions(dataset, library, teacher, None, "train", 0, out, settings)
    plain = BuildSettings(max_examples=40, render=render)
    if negatives is not None:
        assert fingerprint(dataset, library, teacher, None, "train", 0, settings) != fingerprint(
            dataset, library, teacher, None, "train", 0, plain)
    return load_instruction_records(out)["train"]


def _indices(dataset, rec):
    """The user's training sequence (the builder's: it stops before held-out items), the target's
    position in it, the target and the negatives, as item indices."""
    from instructrec.instructions.builder import split_sequences

    seq = split_sequences(dataset, "train")[0][dataset.user_index(rec["user_id"])]
    target = dataset.item_index(rec["item_id"])
    pos = int(np.flatnonzero(seq == target)[0])
    negatives = [dataset.item_index(i) for j, i in enumerate(rec["candidate_items"]) if j != rec["target_index"]]
    return seq, pos, target, negatives


def test_hard_negatives_come_from_the_first_stage_favourites_of_the_whole_history(toy_dataset, popularity, tmp_path):
    from instructrec.instructions.negatives import HardNegatives

    hard = HardNegatives(popularity, "popularity-test", share=1.0, pool=6)
    recs = _build(toy_dataset, tmp_path / "all-hard", hard)
    assert len(recs) == 40
    for rec in recs:
        seq, pos, target, negatives = _indices(toy_dataset, rec)
        exclude = set(seq.tolist()) | {target}
        pool = set(hard.favourites([seq[:pos]], [toy_dataset.user_index(rec["user_id"])], [exclude])[0].tolist())
        assert len(pool) == 6 and not pool & exclude
        assert len(set(negatives)) == 4 and set(negatives) <= pool  # every negative a favourite, none seen
        assert rec["candidates"][rec["target_index"]] == str(toy_dataset.titles[target])


def test_a_share_mixes_favourites_with_uniform_negatives(toy_dataset, popularity, tmp_path):
    from instructrec.instructions.negatives import HardNegatives

    hard = HardNegatives(popularity, "popularity-test", share=0.5, pool=4)
    rng = random.Random(0)
    seq = toy_dataset.sequences[0]
    exclude = set(seq.tolist())
    favourites = hard.favourites([seq[:-1]], [0], [exclude])[0]
    pool = set(favourites.tolist())
    uniform_hits = 0
    for _ in range(50):
        drawn = hard.draw(toy_dataset.n_items, 8, favourites, exclude, rng)
        assert len(set(drawn)) == 8 and not set(drawn) & exclude
        assert set(drawn[:4]) <= pool  # round(0.5 * 8) from the pool ...
        uniform_hits += len(set(drawn[4:]) & pool)  # ... the rest uniform over the catalogue
    assert uniform_hits < 50 * 4 * 0.5  # a uniform draw rarely lands in a 4-item pool of the catalogue

    recs = _build(toy_dataset, tmp_path / "half", hard)
    plain = _build(toy_dataset, tmp_path / "plain", None)
    assert [(r["user_id"], r["item_id"]) for r in recs] == [(r["user_id"], r["item_id"]) for r in plain]  # same plan
    assert [r["candidate_items"] for r in recs] != [r["candidate_items"] for r in plain]  # other negatives


def test_favourites_scored_in_batches_equal_one_at_a_time(toy_dataset):
    """Histories of unequal length in one batch (a sequential model pads them) give each example
    the pool it gets alone."""
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out
    from instructrec.instructions.builder import split_sequences
    from instructrec.instructions.negatives import HardNegatives

    sasrec = create_retriever("sasrec", epochs=2, hidden=16, max_len=10).fit(toy_dataset, leave_one_out(toy_dataset))
    hard = HardNegatives(sasrec, "sasrec-test", pool=5)
    seqs = [s for s in split_sequences(toy_dataset, "train")[0][:30] if len(s) >= 2]
    befores, users = [s[:-1] for s in seqs], list(range(len(seqs)))
    excludes = [set(s.tolist()) for s in seqs]
    batched = hard.favourites(befores, users, excludes, batch_size=4)
    single = [hard.favourites([b], [u], [e])[0] for b, u, e in zip(befores, users, excludes, strict=True)]
    assert len(batched) == len(seqs)
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_settings_are_refused(popularity):
    from instructrec.instructions.negatives import HardNegatives

    with pytest.raises(InstructRecError, match="share"):
        HardNegatives(popularity, "p", share=0.0)
    with pytest.raises(InstructRecError, match="pool"):
        HardNegatives(popularity, "p", pool=0)
