"""Inference routing: read a free-text request and choose the instruction's aspects.

The paper routes by what the user gives: a history (implicit preference P1), a statement of
taste (explicit preference P2), a need (vague intention I1) or concrete attributes (specific
intention I2). This module does that reading with transparent rules, because a request is short
and the rules must be predictable and explainable in the API's answer:

* a sentence about lasting taste ("I love open-world RPGs", "my favourite films are ...") is an
  explicit preference;
* a sentence stating a need whose words hit the catalogue's attribute vocabulary (category labels,
  platform/franchise/genre keywords) is a specific intention, otherwise a vague one.

Requests are then fitted to the template's voice and slot so that they read like the
teacher-written texts the model was tuned on (`fit_to_slot`): the built-in templates speak in the
first person (the teacher plays the user, as in the paper), so a first-person request stays as it
is there, while a template written about "the user" gets it rewritten ("I want" -> "the user
wants"); a specific-intention slot takes a noun phrase ("I need a cheap racing game" -> "a cheap
racing game"), the other slots whole sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from instructrec.instructions.schema import Aspects, Intention, Preference, TaskForm

_PREFERENCE_CUES = re.compile(
    r"\b(i|we)\s+(really\s+|usually\s+|generally\s+|always\s+|just\s+)?"
    r"(love|like|enjoy|prefer|adore|am into|'m into|am a fan|'m a fan|tend to|usually|mostly)\b"
    r"|\bmy\s+(favou?rite|taste|go-to)\b|\bfan of\b|\bi'?m\s+into\b",
    re.IGNORECASE,
)
_INTENTION_CUES = re.compile(
    r"\b(want|need|looking for|look for|searching|search for|recommend|suggest|find|get|buy|gift|"
    r"something|anything|show me|give me|would like|'d like|for my|to play|to watch|to read)\b",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\s+(?:but|and then|also)\s+", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9][a-z0-9'+-]*", re.IGNORECASE)

# First person -> third person. Ordered: longer phrases first. Verbs after "I" are conjugated
# by `_third_person` below.
_PHRASES = [
    (r"\bI am\b", "the user is"), (r"\bI'm\b", "the user is"), (r"\bI've\b", "the user has"),
    (r"\bI'd\b", "the user would"), (r"\bI'll\b", "the user will"), (r"\bI was\b", "the user was"),
    (r"\bI have\b", "the user has"), (r"\bI do\b", "the user does"),
    (r"\bmyself\b", "themselves"), (r"\bmine\b", "the user's"), (r"\bmy\b", "the user's"),
    (r"\bme\b", "the user"), (r"\bwe are\b", "the user is"), (r"\bwe're\b", "the user is"),
    (r"\bour\b", "the user's"), (r"\bus\b", "the user"),
]
_MODALS = {"can", "could", "will", "would", "should", "shall", "might", "must", "may", "also", "really",
           "usually", "just", "always", "never", "often", "generally", "mostly", "still", "only", "don't",
           "didn't", "won't", "can't", "cannot", "currently", "sometimes"}
_ED_BASE_FORMS = {"need", "feed", "heed", "breed", "speed", "seed", "bleed", "succeed", "proceed", "exceed"}
_IRREGULAR = {"have": "has", "do": "does", "go": "goes", "am": "is", "be": "is", "was": "was"}


def _conjugate(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low]
    if low in _MODALS or (low.endswith("ed") and low not in _ED_BASE_FORMS):
        return verb
    if re.search(r"(s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"


def _third_person(match: re.Match[str]) -> str:
    words = match.group(2).split()
    # Conjugate the first verb after "I"/"we", skipping adverbs and modals ("I really want").
    out = []
    done = False
    for w in words:
        if not done and w.lower() not in _MODALS:
            out.append(_conjugate(w))
            done = True
        else:
            if w.lower() in _MODALS and w.lower() in {"can", "could", "will", "would", "should", "shall",
                                                      "might", "must", "may", "don't", "didn't", "won't",
                                                      "can't", "cannot"}:
                done = True
            out.append(w.replace("don't", "doesn't"))
    return "the user " + " ".join(out)


def to_third_person(text: str) -> str:
    """Rewrite a first-person request into the template voice ("I want X" -> "the user wants X")."""
    out = text.strip()
    for pattern, repl in _PHRASES:
        out = re.sub(pattern, repl, out, flags=re.IGNORECASE if pattern != r"\bI am\b" else 0)
    out = re.sub(r"\b(I|we)\s+((?:\w+'?\w*\s+){0,1}\w+'?\w*)", _third_person, out)
    out = re.sub(r"\bthe user (\w+) the user\b", r"the user \1 themselves", out)
    return re.sub(r"\s+", " ", out)


@dataclass(frozen=True)
class RoutedRequest:
    """How a request was read."""

    aspects: Aspects
    kind: str
    """none | vague_intention | specific_intention | explicit_preference | mixed"""
    preference_text: str | None
    """Explicit preference as the user wrote it (first person; see `fit_to_slot`), if any."""
    intention_text: str | None
    """Intention as the user wrote it (first person; see `fit_to_slot`), if any."""
    matched_attributes: tuple[str, ...] = ()
    """Catalogue attribute words found in the intention (why it counts as specific)."""


def attribute_vocabulary(categories: Iterable[Iterable[str]], keywords: Iterable[str] = ()) -> frozenset[str]:
    """Lower-cased single words that name item attributes (category labels, title keywords)."""
    vocab: set[str] = set()
    for cats in categories:
        for cat in cats:
            vocab.update(w.lower() for w in _WORD.findall(cat) if len(w) > 2)
    vocab.update(k.lower() for k in keywords if len(k) > 1)
    return frozenset(vocab)


def route_request(request: str | None, *, has_history: bool, vocabulary: frozenset[str],
                  task: TaskForm = TaskForm.RERANKING) -> RoutedRequest:
    """Choose aspects from what the user gave: history -> P1; taste sentences -> P2; needs -> I1/I2."""
    prefs: list[str] = []
    needs: list[str] = []
    for sentence in (s.strip(" ,") for s in _SENTENCE_SPLIT.split(request or "") if s and s.strip(" ,")):
        if _PREFERENCE_CUES.search(sentence) and not _INTENTION_CUES.search(sentence):
            prefs.append(sentence)
        else:
            needs.append(sentence)
    matched = tuple(dict.fromkeys(w.lower() for s in needs for w in _WORD.findall(s) if w.lower() in vocabulary))
    intention = Intention.NONE if not needs else Intention.SPECIFIC if matched else Intention.VAGUE
    preference: tuple[Preference, ...] = ((Preference.IMPLICIT,) if has_history else ()) + (
        (Preference.EXPLICIT,) if prefs else ())
    if prefs and needs:
        kind = "mixed"
    elif prefs:
        kind = "explicit_preference"
    elif needs:
        kind = "specific_intention" if matched else "vague_intention"
    else:
        kind = "none"
    return RoutedRequest(
        aspects=Aspects(preference, intention, task),
        kind=kind,
        preference_text=" ".join(as_sentence(p) for p in prefs) if prefs else None,
        intention_text=" ".join(as_sentence(n) for n in needs) if needs else None,
        matched_attributes=matched,
    )


_REQUEST_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:(?:i|we)\s+(?:really\s+|just\s+)?(?:am|are)?\s*(?:want|need|would like|'d like|looking for|searching for|after|in the mood for|am looking for|"
    r"'m looking for|am searching for|'m searching for|search for|look for|am after|'m after|"
    r"am in the mood for|'m in the mood for|feel like)\s+(?:to\s+(?:buy|get|find|play|watch|read)\s+)?"
    r"|(?:recommend|suggest|find|show|give|get)\s+(?:me|us)?\s*)",
    re.IGNORECASE,
)
_THIRD_PERSON_TEMPLATE = re.compile(r"\b(the|this|a) (user|shopper|person|customer)\b", re.IGNORECASE)


def noun_phrase(text: str) -> str:
    """The object of a request: "I need a cheap racing game." -> "a cheap racing game"."""
    expanded = re.sub(r"\b(I|we)'(m|d|re)\b", lambda m: m.group(1) + {"m": " am", "d": " would", "re": " are"}[m.group(2)],
                      text.strip(), flags=re.IGNORECASE)
    phrase = _REQUEST_LEAD.sub("", expanded, count=1).strip().rstrip(".!?")
    return phrase or text.strip().rstrip(".!?")


def as_sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def fit_to_slot(text: str, slot: str, template_text: str, specific: bool) -> str:
    """Fit a user's first-person text to a template's voice and slot (see the module docstring)."""
    if slot == "intention" and specific:
        return noun_phrase(text)
    quoted = f'"{{{slot}}}"' in template_text
    if _THIRD_PERSON_TEMPLATE.search(template_text) and not quoted:
        return as_sentence(to_third_person(text))
    return as_sentence(text)
