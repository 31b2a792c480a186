"""Prompts for LLM teachers, in the paper's spirit: the teacher plays the user.

Each request becomes a short chat: a system line casting the model as a shopper/viewer speaking
for themselves, and a user line with the data the text may be written from (history titles for
a preference; the target item's title, categories and the user's review for an intention).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from instructrec.instructions.teachers.base import TeacherRequest

SYSTEM = ("You are role-playing a real customer of an online store. Speak in the first person, "
          "briefly and naturally. Never mention product names you are asked not to mention.")


def build_messages(req: TeacherRequest, titles: Sequence[str], categories: Sequence[Sequence[str]],
                   max_history: int = 20) -> list[dict[str, str]]:
    """Chat messages for one request (titles/categories indexed by item)."""
    if req.kind == "preference":
        shown = [titles[i] for i in req.history[-max_history:]]
        body = ("These are the items you bought or watched, oldest first:\n" + "\n".join(f"- {t}" for t in shown)
                + "\n\nIn one or two sentences, tell a shop assistant what you generally like "
                  "(kinds, platforms, genres, series, brands). Do not list the items.")
    else:
        title = titles[req.item]
        cats = ", ".join(categories[req.item]) if len(categories[req.item]) else "none"
        review = f"\nYour review of it: {req.review}" if req.review else ""
        if req.kind == "vague_intention":
            body = (f'You are about to buy "{title}" (categories: {cats}).{review}\n\nIn one sentence, say why '
                    "you need something like this (the occasion, the person it is for, or the use), "
                    "without naming or describing the product itself.")
        else:
            body = (f'You are about to buy "{title}" (categories: {cats}).{review}\n\nWrite the short search '
                    "phrase (a noun phrase of at most 12 words, starting with 'a' or 'an') you would type to "
                    "find such an item. Use its kind, genre, platform or series, but never its exact title.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def clean_reply(text: str, max_sentences: int = 2, max_chars: int = 300) -> str | None:
    """First non-empty line without quotes or a leading label, its repeated sentences dropped
    (small models loop), cut to `max_sentences` and whole sentences within `max_chars`; None if
    nothing usable is left."""
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip()
        for label in ("Answer:", "Search phrase:", "Query:", "Preference:"):
            if line.lower().startswith(label.lower()):
                line = line[len(label):].strip().strip('"')
        if len(line) < 3:
            continue
        kept: list[str] = []
        for sentence in _SENTENCE.split(line):
            sentence = sentence.strip()
            if sentence and sentence not in kept and len(" ".join([*kept, sentence])) <= max_chars:
                kept.append(sentence)
            if len(kept) == max_sentences:
                break
        return " ".join(kept) if kept else line[:max_chars]
    return None
