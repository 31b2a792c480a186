"""Slot filling and the public `Renderer` / `render_rerank_instruction` other stages call."""

from __future__ import annotations

import random

import pytest

from instructrec.errors import InstructRecError
from instructrec.instructions.render import (
    Renderer,
    RenderSettings,
    format_candidates,
    format_history,
    render_rerank_instruction,
    sample_negatives,
)
from instructrec.instructions.teachers.extractive import leaks_title

EVALUATED = ["P1,I0,T3", "P0,I2,T3", "P1,I1,T3", "P1,I2,T3", "P1+P2,I0,T3"]


def test_history_is_most_recent_oldest_first_and_fits_budget():
    titles = [f"title {i:02d}" for i in range(30)]
    text = format_history(titles, RenderSettings(history_items=20))
    assert text.split("; ") == titles[-20:]
    short = format_history(titles, RenderSettings(history_items=20, history_chars=40))
    assert short.split("; ") == titles[-4:] and len(short) <= 40
    by_tokens = format_history(titles, RenderSettings(history_tokens=6, token_counter=lambda s: len(s.split())))
    assert by_tokens.split("; ") == titles[-3:]
    assert format_history(["x" * 5000], RenderSettings(title_chars=50)).endswith("\u2026")


def test_candidates_are_numbered_in_order():
    assert format_candidates(["a", "b"], RenderSettings()) == "\n1. a\n2. b"


def test_negatives_avoid_excluded_and_are_distinct():
    rng = random.Random(0)
    exclude = set(range(0, 90))
    for _ in range(50):
        neg = sample_negatives(100, 9, exclude, rng)
        assert len(set(neg)) == 9 and not set(neg) & exclude
    with pytest.raises(InstructRecError, match="fewer candidates"):
        sample_negatives(100, 11, exclude, rng)


@pytest.fixture(scope="module")
def renderer(movielens):
    return Renderer(movielens)


@pytest.mark.parametrize("key", EVALUATED)
def test_rerank_renders_evaluated_combinations(renderer, movielens, key):
    seq = movielens.sequences[0]
    history, target = seq[:25], int(seq[25])
    candidates = [target, 500, 600, 700]
    ins = renderer.rerank(key, history, candidates, target_item=target)
    titles = [movielens.title(i) for i in candidates]
    assert ins.aspects.key() == key and ins.candidates == tuple(titles)
    assert ins.candidate_items == tuple(movielens.item_ids[i] for i in candidates)
    assert all(f"{n}. {t}" in ins.text for n, t in enumerate(titles, 1))
    if key.startswith("P1"):
        assert movielens.title(int(history[-1])) in ins.text
        assert movielens.title(int(history[0])) not in ins.text.split("\n")[0]  # only the last 20 are shown
    if "I1" in key or "I2" in key:  # the intention is about the target, but never names it
        first_line = ins.text.split("\n1. ")[0]
        assert not leaks_title(first_line, movielens.title(target))


def test_rerank_accepts_titles_and_given_texts(movielens):
    ins = render_rerank_instruction("P1,I2,T3", ["Toy Story", "Heat"], ["Fargo", "Babe"],
                                    intention="a crime drama from the 1990s")
    assert "Toy Story; Heat" in ins.text and "a crime drama from the 1990s" in ins.text
    assert ins.candidate_items == ()
    ins = render_rerank_instruction("P1+P2,I0,T3", [0, 1], [2, 3], dataset=movielens)
    assert "I enjoy" in ins.text  # the extractive teacher wrote the stated preference


def test_rerank_errors_are_clear(renderer):
    with pytest.raises(InstructRecError, match="history is empty"):
        renderer.rerank("P1,I0,T3", [], [1, 2])
    with pytest.raises(InstructRecError, match="target_item"):
        renderer.rerank("P0,I2,T3", [], [1, 2])
    with pytest.raises(InstructRecError, match="no template with aspects"):
        renderer.rerank("P2,I1,T0", [1], [1, 2])
    with pytest.raises(InstructRecError, match="not an item index"):
        renderer.rerank("P1,I0,T3", [1], [10**6])
    with pytest.raises(InstructRecError, match="has aspects"):
        renderer.rerank("P1,I0,T3", [1], [2], template_id="int-rerank-specific")
    with pytest.raises(InstructRecError, match="need a dataset"):
        render_rerank_instruction("P1,I0,T3", [1, 2], [3])


def test_template_id_selects_wording(renderer):
    a = renderer.rerank("P1,I0,T3", [1, 2], [3, 4])
    b = renderer.rerank("P1,I0,T3", [1, 2], [3, 4], template_id="pref-rerank-history-b")
    assert a.template_id == "pref-rerank-history" and b.template_id == "pref-rerank-history-b"
    assert a.text != b.text
