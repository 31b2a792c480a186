"""Constraints a user names are kept: parsing on a small catalogue, filtering in the recommender."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from instructrec.data.dataset import Dataset
from instructrec.model.backend import load_model
from instructrec.recommender import Recommender, RecommenderSettings
from instructrec.recommender.constraints import Catalogue
from instructrec.recommender.conversation import Turn

FILMS = [  # title, genres, year, price
    ("Night of Fear", ["Horror"], 1978, 9.0), ("Ghost House 2", ["Horror"], 1994, 4.0),
    ("Happy Days", ["Comedy"], 1995, 12.0), ("Love in Paris", ["Romance", "Comedy"], 1992, 15.0),
    ("Toy Parade", ["Animation", "Children's"], 1996, 20.0), ("Space Cadets", ["Sci-Fi"], 1999, None),
    ("Old Gun", ["Western"], 1955, 7.0), ("Laugh Track II", ["Comedy"], 1997, 3.0),
]


@pytest.fixture(scope="module")
def films() -> Dataset:
    items = pd.DataFrame({"item_id": [str(i) for i in range(len(FILMS))], "title": [f[0] for f in FILMS],
                          "categories": [f[1] for f in FILMS], "year": [f[2] for f in FILMS],
                          "price": [f[3] for f in FILMS]})
    inter = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["0", "2", "5"], "timestamp": [0, 1, 2]})
    return Dataset.from_frames(items, inter, source="toy")


def _read(cat: Catalogue, text: str, previous=()) -> tuple[list[str], list[int]]:
    c = cat.parse(text, previous)
    return c.describe(), np.flatnonzero(cat.mask(c)).tolist()


def test_everyday_words_name_catalogue_categories(films):
    cat = Catalogue(films)
    assert _read(cat, "something scary for halloween") == (["category Horror ('scary')"], [0, 1])
    assert _read(cat, "a film to watch with my kids")[1] == [4]
    assert _read(cat, "a romantic comedy")[1] == [2, 3, 7]  # relaxed to any: too few items carry both
    assert _read(cat, "comedy or western")[1] == [2, 3, 6, 7]


def test_negations_years_prices_and_sequels(films):
    cat = Catalogue(films)
    assert _read(cat, "nothing too scary")[1] == [2, 3, 4, 5, 6, 7]
    assert _read(cat, "a comedy from the 90s, no more sequels") == (
        ["category Comedy", "year 1990-1999", "no sequels"], [2, 3])
    assert _read(cat, "before 1980")[1] == [0, 6]
    assert _read(cat, "under $10")[1] == [0, 1, 6, 7]  # item 5 has no price: it cannot be shown to fit
    # relative words against the previous answer: cheaper than its median price, older than its median year
    assert _read(cat, "cheaper", previous=[2, 3, 4])[1] == [0, 1, 2, 6, 7]  # below $15
    assert _read(cat, "something older", previous=[2, 7])[0] == ["year <= 1995"]


def test_a_price_without_prices_is_ignored_and_said(films):
    no_prices = Dataset(films.items.assign(price=pd.array([None] * len(FILMS), dtype="Float64")),
                        films.interactions, films.reviews, films.manifest)
    c = Catalogue(no_prices).parse("a cheap comedy")
    assert c.describe() == ["category Comedy"] and c.ignored == ("a price bound (this catalogue has no prices)",)


@pytest.fixture(scope="module")
def rec(toy_parts) -> Recommender:
    dataset, base, _, pop, bm25 = toy_parts
    return Recommender(dataset, load_model(str(base), device="cpu"), pop, bm25, RecommenderSettings(n_candidates=8))


def test_a_named_genre_moves_matching_items_up(rec, toy_dataset):
    user = str(toy_dataset.user_ids[0])
    plain = rec.recommend(user_id=user, k=4)
    asked = rec.recommend(user_id=user, request="I'd like a puzzle", k=4)
    share = lambda r: np.mean(["Puzzle" in it.title for it in r.items])  # noqa: E731
    assert share(asked) == 1.0 > share(plain)
    assert asked.constraints == ["category Puzzle"] and asked.request_kind == "specific_intention"
    assert all("matches Puzzle" in it.reason for it in asked.items)
    avoided = rec.recommend(user_id=user, request="anything, but no puzzle and no racing", k=6)
    assert not any("Puzzle" in it.title or "Racing" in it.title for it in avoided.items)


def test_a_filter_that_leaves_nothing_says_so(rec):
    result = rec.recommend(request="no racing, no puzzle, no shooter, no sports", k=5)
    assert result.items == [] and result.nothing_matches
    assert result.constraints == ["not Racing", "not Puzzle", "not Shooter", "not Sports"]
    assert any(n.startswith("nothing in the catalogue matches") for n in result.notes)


def test_a_follow_up_refines_the_last_answer(rec):
    first = rec.recommend(request="a shooter game", k=3)
    turn = Turn("a shooter game", tuple(it.item_id for it in first.items))
    second = rec.recommend(request="a sports game instead", k=3, conversation=[turn])
    assert all("Sports" in it.title for it in second.items) and second.constraints == ["category Sports"]
    like = rec.recommend(request="more like #2", k=3, conversation=[turn])
    assert first.items[1].item_id not in {it.item_id for it in like.items}
    assert all("Shooter" in it.title for it in like.items)  # the shooter constraint of turn 1 holds
    with pytest.raises(Exception, match="#9 of the last answer"):
        rec.recommend(request="more like #9", conversation=[turn])


def test_pool_rule_and_hybrid_vectors_saved_with_the_recommender(toy_parts, tmp_path):
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out

    dataset, base, _, pop, _ = toy_parts
    hybrid = create_retriever("hybrid").fit(dataset, leave_one_out(dataset))
    rec = Recommender(dataset, load_model(str(base), device="cpu"), pop, hybrid,
                      RecommenderSettings(n_candidates=8, request_share=0.75, constraints=False))
    hist = dataset.sequences[0]
    pool, from_request = rec.candidate_pool(hist, "a sports game", set(hist.tolist()))
    assert len(pool) == 8 and len(from_request) >= 6  # 6 of 8 slots are the request's (history may agree)
    rec.settings.request_share = 0.0
    assert rec.candidate_pool(hist, "a sports game", set(hist.tolist()))[1] <= set(
        rec.candidate_pool(hist, None, set(hist.tolist()))[0])
    rec.settings.request_share = 0.75
    folder = rec.save(tmp_path / "rec", model_source=str(base))
    assert (folder / "text_retriever" / "dense" / "state.safetensors").is_file()
    back = Recommender.load(folder, device="cpu")
    assert np.allclose(back.text_retriever.dense.item_vectors, hybrid.dense.item_vectors)
    user = str(dataset.user_ids[0])
    a = rec.recommend(user_id=user, request="a sports game", k=5)
    b = back.recommend(user_id=user, request="a sports game", k=5)
    assert [it.item_id for it in a.items] == [it.item_id for it in b.items] and a.pool == b.pool


GAMES = [  # title, categories, brand, price: a store catalogue whose titles name the platform
    ("Star Blaster - PS4", ["Video Games"], "Nova", 19.0), ("Star Blaster - Nintendo Switch", ["Video Games"], "Nova", 39.0),
    ("Kart Racer (Xbox One)", ["Video Games"], "Zoom", 25.0), ("Kart Racer PlayStation 4 Edition", ["Video Games"], "Zoom", 15.0),
    ("Pro Controller for Nintendo Switch", ["Video Games"], "Padco", 49.0), ("Wireless Gaming Mouse", ["Computers"], "Logitech", 29.0),
    ("Pink Phone Case for iPhone", ["Cell Phones & Accessories"], None, 9.0),
    ("Black Phone Case for iPhone", ["Cell Phones & Accessories"], None, 12.0),
    ("Wired Gaming Headset", ["Video Games"], "Zoom", None), ("Puzzle Cube", ["Toys & Games"], "Nova", 5.0),
    ("Dance Mat - Wii", ["Video Games"], "Padco", 30.0), ("Racing Wheel - PS4", ["Video Games"], "Padco", 60.0),
]


@pytest.fixture(scope="module")
def games() -> Dataset:
    items = pd.DataFrame({"item_id": [f"g{i}" for i in range(len(GAMES))], "title": [g[0] for g in GAMES],
                          "categories": [g[1] for g in GAMES], "brand": [g[2] for g in GAMES],
                          "price": pd.array([g[3] for g in GAMES], dtype="Float64")})
    rows = [(f"u{u}", f"g{i}", t) for u in range(6) for t, i in enumerate([(u + j) % len(GAMES) for j in range(4)])]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frames(items, inter, source="toy-store")


def test_platforms_brands_and_exclusions(games):
    cat = Catalogue(games)
    assert _read(cat, "a shooter for PS4") == (
        ["category Video Games ('ps4')", "platform PlayStation 4 ('ps4')"], [0, 3, 11])
    assert _read(cat, "something to play on my switch")[1] == [1, 4]  # "my switch": the console
    assert _read(cat, "anything for the playstation or the wii")[1] == [0, 3, 10, 11]  # several: any of them
    assert _read(cat, "a video game, not for PS4")[1] == [1, 2, 4, 8, 10]  # a platform word negated: not the category
    assert _read(cat, "a mouse from Logitech") == (["category Computers ('mouse')", "brand Logitech"], [5])
    assert _read(cat, "anything by Nova")[1] == [0, 1, 9]
    assert _read(cat, "nothing from Zoom, please") == (["not from Zoom"], [0, 1, 4, 5, 6, 7, 9, 10, 11])
    assert _read(cat, "a phone case for iPhone, not pink") == (
        ["category Cell Phones & Accessories ('phone case')", "platform iPhone", "not 'pink'"], [7])
    assert _read(cat, "a switch game under $20")[0] == ["price <= $20.00"]  # "switch" alone is not the console
    assert _read(cat, "a ps4 game no more than $18")[1] == [3]
    # a film catalogue does not read platforms (too few of its titles name one), and says so
    c = Catalogue(films_dataset()).parse("a comedy for my PS4")
    assert c.platforms == () and c.ignored == ("a platform (this catalogue's items name none)",)


def test_a_bare_capitalised_maker_that_leads_titles_is_a_brand():
    """Store titles lead with the maker where the brand field is empty ("a Samsung phone case"); a
    word that leads fewer than three titles, a lower-case word and a sentence's article are not read."""
    titles = ["Samsung Galaxy Case Blue", "SAMSUNG Wall Charger", "Samsung Galaxy Case Clear",
              "Spigen Case for Samsung Galaxy", "Spigen Case for iPhone", "Clear Case for iPhone",
              "Travel Mug", "Travel Bag"]
    items = pd.DataFrame({"item_id": [f"p{i}" for i in range(len(titles))], "title": titles,
                          "categories": [["Cell Phones & Accessories"]] * 6 + [["Home"]] * 2, "brand": [None] * 8})
    inter = pd.DataFrame({"user_id": ["u"] * 2, "item_id": ["p6", "p7"], "timestamp": [0, 1]})
    cat = Catalogue(Dataset.from_frames(items, inter, source="toy"))
    assert _read(cat, "a Samsung phone case") == (
        ["category Cell Phones & Accessories ('phone case')", "brand Samsung"], [0, 1, 2, 3])
    assert _read(cat, "Samsung chargers")[0] == ["brand Samsung"]  # the first word may be the name
    assert _read(cat, "a phone case, nothing from Samsung")[1] == [4, 5]
    assert _read(cat, "a Spigen case")[0] == []  # "Spigen" leads two titles only
    assert _read(cat, "a samsung phone case")[0] == ["category Cell Phones & Accessories ('phone case')"]
    assert _read(cat, "A Travel mug")[0] == []  # "Travel" leads two titles; "A" is an article


def films_dataset() -> Dataset:
    items = pd.DataFrame({"item_id": [str(i) for i in range(len(FILMS))], "title": [f[0] for f in FILMS],
                          "categories": [f[1] for f in FILMS], "year": [f[2] for f in FILMS]})
    inter = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["0", "2", "5"], "timestamp": [0, 1, 2]})
    return Dataset.from_frames(items, inter, source="toy")


def test_a_follow_up_replaces_the_platform_and_keeps_the_rest(games):
    from instructrec.recommender.constraints import refine

    cat = Catalogue(games)
    both = refine(cat.parse("a racing game for PS4 under $30"), cat.parse("for Xbox One instead"))
    assert both.platforms == ("Xbox One",) and both.price_max == 30.0
    assert np.flatnonzero(cat.mask(both)).tolist() == [2]


@pytest.fixture(scope="module")
def store_rec(games, toy_parts) -> Recommender:
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out

    _, base, _, _, _ = toy_parts
    split = leave_one_out(games)
    pop = create_retriever("popularity").fit(games, split)
    bm25 = create_retriever("bm25").fit(games, split)
    return Recommender(games, load_model(str(base), device="cpu"), pop, bm25, RecommenderSettings(n_candidates=6))


def test_a_named_platform_moves_matching_items_up(store_rec):
    ps4 = lambda r: np.mean(["PS4" in it.title or "PlayStation 4" in it.title for it in r.items])  # noqa: E731
    plain = store_rec.recommend(user_id="u0", k=3)
    asked = store_rec.recommend(user_id="u0", request="a game for my PS4", k=3)
    assert ps4(asked) == 1.0 > ps4(plain)
    assert "platform PlayStation 4 ('ps4')" in asked.constraints
    assert all("PlayStation 4" in it.reason for it in asked.items)  # the reason names the platform kept


def test_platform_or_price_filters_that_leave_nothing_say_so(store_rec):
    for request, named in [("a game for the Wii U", "platform Wii U"), ("a PS4 game under $1", "price <= $1.00")]:
        result = store_rec.recommend(user_id="u1", request=request, k=5)
        assert result.items == [] and result.nothing_matches, request
        assert named in result.constraints
        assert any(n.startswith("nothing in the catalogue matches") and named in n for n in result.notes)


def test_a_platform_and_a_price_bound_together_keep_both(store_rec, games):
    """Every user asking for a PS4 game under $20 gets exactly the PS4 items at or below $20 that
    they have not played (g0 $19, g3 $15), whatever their history."""
    for u in range(6):
        result = store_rec.recommend(user_id=f"u{u}", request="a PS4 game under $20", k=5)
        seen = {str(games.item_ids[i]) for i in games.sequences[u]}
        assert sorted(it.item_id for it in result.items) == sorted({"g0", "g3"} - seen), u
        assert {"platform PlayStation 4 ('ps4')", "price <= $20.00"} <= set(result.constraints)
