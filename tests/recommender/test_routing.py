"""Request routing: aspects chosen from what the user gives, and the first-person rewrite."""

from __future__ import annotations

import pytest

from instructrec.recommender.routing import (
    attribute_vocabulary,
    fit_to_slot,
    noun_phrase,
    route_request,
    to_third_person,
)

VOCAB = attribute_vocabulary([["Racing", "Xbox"], ["Horror"], ["Comedy"]], ["zelda", "ps4"])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("I want something relaxing", "the user wants something relaxing"),
        ("I need a gift for my son", "the user needs a gift for the user's son"),
        ("I really love RPGs", "the user really loves RPGs"),
        ("I'm looking for a game", "the user is looking for a game"),
        ("I'd like a comedy", "the user would like a comedy"),
        ("I watch movies with my kids", "the user watches movies with the user's kids"),
        ("I don't want anything violent", "the user doesn't want anything violent"),
    ],
)
def test_third_person(text, want):
    assert to_third_person(text) == want


def test_vague_intention_with_history():
    r = route_request("I want something relaxing to play with my daughter", has_history=True, vocabulary=VOCAB)
    assert r.aspects.key() == "P1,I1,T3"
    assert r.kind == "vague_intention"
    assert r.intention_text == "I want something relaxing to play with my daughter."


def test_specific_intention_names_catalogue_attributes():
    r = route_request("I need a cheap racing game for Xbox", has_history=False, vocabulary=VOCAB)
    assert r.aspects.key() == "P0,I2,T3"
    assert r.matched_attributes == ("racing", "xbox")


def test_explicit_preference_and_mixed():
    pref = route_request("I love horror films.", has_history=True, vocabulary=VOCAB)
    assert pref.aspects.key() == "P1+P2,I0,T3" and pref.kind == "explicit_preference"
    mixed = route_request("I like Zelda games. Looking for a gift for my son", has_history=False, vocabulary=VOCAB)
    assert mixed.kind == "mixed" and mixed.aspects.key() == "P2,I1,T3"
    assert mixed.preference_text == "I like Zelda games."


def test_no_request_is_sequential_recommendation():
    r = route_request(None, has_history=True, vocabulary=VOCAB)
    assert r.aspects.key() == "P1,I0,T3" and r.kind == "none"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("I need a cheap racing game for Xbox", "a cheap racing game for Xbox"),
        ("I'm looking for a comedy.", "a comedy"),
        ("Recommend me a horror movie", "a horror movie"),
        ("we are looking for a co-op shooter", "a co-op shooter"),
        ("a racing game for PS4", "a racing game for PS4"),
    ],
)
def test_noun_phrase_for_specific_slots(text, want):
    assert noun_phrase(text) == want


def test_fit_to_slot_follows_template_voice():
    first_person = "About my taste: {preference} Pick the item that fits me best: {candidates}"
    third_person = "History: {history}. Is this a good recommendation for this user given {preference}?"
    quoted = 'A user says: "{preference}" Write the request.'
    assert fit_to_slot("I like RPGs", "preference", first_person, False) == "I like RPGs."
    assert fit_to_slot("I like RPGs", "preference", third_person, False) == "the user likes RPGs."
    assert fit_to_slot("I like RPGs", "preference", quoted, False) == "I like RPGs."
    assert fit_to_slot("I want a racing game", "intention", first_person, True) == "a racing game"
