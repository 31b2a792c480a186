"""Conversations without server state: the client sends the earlier turns back with each request.

A turn is what the user asked and the item ids the answer showed. The recommender reads the whole
conversation on every call (`Recommender.recommend(..., conversation=[...])`): constraints of every
turn, each refining the ones before ("a comedy" then "something older" then "no sequels"); the
request texts joined for the retrievers and the LLM; and references to the last answer ("more like
#3"). Two servers given the same turns therefore answer alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from instructrec.recommender.routing import as_sentence

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10, "last": -1}
_BY_NUMBER = re.compile(r"\blike\s+(?:#|number\s+|no\.?\s*|item\s+)(\d+)\b", re.IGNORECASE)
_BY_ORDINAL = re.compile(r"\blike\s+the\s+(" + "|".join(_ORDINALS) + r")(?:\s+one)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation."""

    request: str
    """What the user asked in that turn."""
    items: tuple[str, ...] = ()
    """Item ids the answer showed, best first (what "#3" refers to in the next turn)."""


def referenced_rank(text: str) -> int | None:
    """The 1-based rank a follow-up points at ("more like #3" -> 3, "like the last one" -> -1)."""
    if m := _BY_NUMBER.search(text):
        return int(m.group(1))
    if m := _BY_ORDINAL.search(text):
        return _ORDINALS[m.group(1).lower()]
    return None


def conversation_text(turns: Sequence[Turn], request: str | None) -> str | None:
    """The requests of a conversation as one text, oldest first (what retrievers and the LLM read)."""
    texts = [t.request.strip() for t in turns if t.request.strip()] + ([request.strip()] if request else [])
    return " ".join(as_sentence(t) for t in texts) or None
