"""The extractive teacher: P2 from recurring facets, I1 from reviews, I2 from categories/keywords."""

from __future__ import annotations

import pandas as pd
import pytest

from instructrec.data.dataset import Dataset
from instructrec.instructions.facets import franchise_key, title_core
from instructrec.instructions.teachers import ExtractiveTeacher, TeacherRequest, leaks_title


@pytest.fixture(scope="module")
def games_teacher(games):
    return ExtractiveTeacher().fit(games)


@pytest.fixture(scope="module")
def tiny():
    items = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "e"],
        "title": ["Mario Kart 8 - Nintendo Switch", "Mario Kart 7 - Nintendo 3DS", "Halo 3 - Xbox 360",
                  "Turtle Beach Headset for PS4", "Zoo Tycoon - PC"],
        "categories": [[] for _ in range(5)],  # from_frames needs the column (see report)
    })
    inter = pd.DataFrame({"user_id": ["u"] * 5, "item_id": list("abcde"), "timestamp": range(5)})
    reviews = pd.DataFrame({
        "user_id": ["u", "u", "u"], "item_id": ["a", "c", "d"],
        "text": ["Fun game. I bought Mario Kart 8 for my son's birthday and he plays it every day. Five stars.",
                 "Great.", "Solid sound overall."],
    })
    dataset = Dataset.from_frames(items, inter, reviews, source="test")
    return dataset, ExtractiveTeacher().fit(dataset)


def test_title_core_and_franchise():
    assert title_core("Metal Gear Solid 2: Sons of Liberty") == "metal gear solid 2"
    assert franchise_key("Metal Gear Solid 2: Sons of Liberty") == "metal gear solid"
    assert franchise_key("X-Blades - Xbox 360") == "x-blades"


def test_preference_names_recurring_facets(tiny):
    _, teacher = tiny
    ans = teacher.preference([0, 1])
    assert ans.source == "tfidf" and "Mario Kart series" in ans.text
    assert teacher.preference([]).source == "fallback:empty-history"


def test_vague_intention_from_review_masks_the_name(tiny):
    _, teacher = tiny
    ans = teacher.answer([TeacherRequest("vague_intention", "u", item=0)])[0]
    assert ans.source == "review"
    assert "son's birthday" in ans.text and "Mario Kart" not in ans.text and "this item" in ans.text


def test_review_without_usable_sentence_and_no_review_fall_back_counted(tiny):
    _, teacher = tiny
    no_need = teacher.answer([TeacherRequest("vague_intention", "u", item=3)])[0]
    assert no_need.source == "fallback:review-without-need" and no_need.is_fallback
    too_short = teacher.answer([TeacherRequest("vague_intention", "u", item=2)])[0]
    assert too_short.source == "fallback:review-without-need"
    none = teacher.answer([TeacherRequest("vague_intention", "u", item=4)])[0]
    assert none.source.startswith("fallback:no-review") and "PC" in none.text


def test_specific_intention_uses_keywords(tiny, movielens):
    _, teacher = tiny
    ans = teacher.specific_intention(0)
    assert ans.source == "title-keywords"
    assert "Nintendo Switch" in ans.text and "racing" in ans.text and "Mario Kart series" in ans.text
    ml = ExtractiveTeacher().fit(movielens)
    toy = ml.specific_intention(0)  # Toy Story: Animation, Children's, Comedy (1995)
    assert toy.source == "categories" and "Animation" in toy.text and "1990s" in toy.text and "movie" in toy.text


def test_intentions_never_copy_the_title_on_games(games, games_teacher):
    for item in range(games.n_items):
        title = games.title(item)
        for ans in (games_teacher.specific_intention(item), games_teacher.vague_intention(item, None, "u")):
            assert not leaks_title(ans.text, title), (title, ans)
            assert title.lower() not in ans.text.lower()


def test_teacher_is_deterministic(games, games_teacher):
    again = ExtractiveTeacher().fit(games)
    reqs = [TeacherRequest("preference", "u", history=tuple(games.sequences[u][:-1])) for u in range(50)]
    reqs += [TeacherRequest("vague_intention", str(u), item=int(games.sequences[u][-1])) for u in range(50)]
    assert games_teacher.answer(reqs) == again.answer(reqs)


def test_vague_intentions_from_real_reviews(tmp_path, reviews_2023_dir):
    """Real Amazon 2023 reviews: need sentences found, names masked, the rest counted as fallbacks."""
    from instructrec.data.loaders.amazon2023 import load_sample

    ds = load_sample(reviews_2023_dir)
    teacher = ExtractiveTeacher().fit(ds)
    reqs = [TeacherRequest("vague_intention", str(u), item=ds.item_index(i))
            for u, i in zip(ds.reviews["user_id"], ds.reviews["item_id"])]
    answers = teacher.answer(reqs)
    from_review = [a for a in answers if a.source == "review"]
    assert len(from_review) > 0.2 * len(answers)
    assert all(a.source == "review" or a.is_fallback for a in answers)
    for req, ans in zip(reqs, answers):
        assert "<br" not in ans.text and not leaks_title(ans.text, ds.title(req.item))
    assert any("gift" in a.text.lower() or "my wife" in a.text.lower() for a in from_review)
