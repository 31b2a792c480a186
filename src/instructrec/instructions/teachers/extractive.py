"""The extractive teacher: offline, deterministic, no model.

- P2 (explicit preference) from the history: the TF-IDF-salient facets that recur in the user's
  items (platforms, franchises, genres, item kinds, brands, category labels, decades), phrased in
  the first person ("I mostly play on PlayStation 2. I am a fan of the Final Fantasy series.").
- I1 (vague intention) from the user's review of the target: the sentence that states a need, an
  occasion or a use ("bought it for my son's birthday"), with the item's own name masked.
  Documented fallbacks, counted by `source`: no review (Games, MovieLens) or a review without a
  usable sentence -> one broad facet of the target ("I want something new to play on my Wii.");
  an item without facets -> a generic request.
- I2 (specific intention) from the target's category labels (MovieLens genres + decade) or, where
  there are none (Games), from title keywords: kind or genre, platform, franchise
  ("a role-playing game for PlayStation 2 from the Final Fantasy series").
An intention never contains the target's title: franchises equal to the title's leading name are
dropped and review sentences get the name masked; `leaks_title` is the final check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from instructrec.data.dataset import Dataset
from instructrec.instructions.facets import ItemFacets, compute_facets, normalise, salient_facets, title_core
from instructrec.instructions.teachers.base import TeacherAnswer, TeacherError, TeacherRequest

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+|<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]{1,40}>")
_NEED_CUES = re.compile(
    r"\b(gift|present|birthday|christmas|xmas|for my|my (?:son|daughter|kids?|wife|husband|boyfriend|"
    r"girlfriend|nephew|niece|grandson|granddaughter|brother|sister|family|friend)|looking for|wanted|"
    r"needed|need|bought (?:it|this)|purchased (?:it|this)|to play|for playing|to use|for use|replace|"
    r"replacement|so (?:i|we) can|in order to|great for|perfect for|good for|use (?:it|this))\b",
    re.I,
)


def leaks_title(text: str, title: str) -> bool:
    """Whether `text` contains the item's full title (normalised) or its distinctive leading name."""
    norm_text, norm_title = f" {normalise(text)} ", normalise(title)
    if norm_title and f" {norm_title} " in norm_text:
        return True
    core = normalise(title_core(title))
    return len(core.split()) >= 2 and f" {core} " in norm_text


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _a(phrase: str) -> str:
    """'a' or 'an' before a phrase (by its first letter, good enough for facet names)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _pick(options: Sequence[str], *key: object) -> str:
    """A deterministic variant choice (stable across runs and processes, unlike hash())."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=4).digest()
    return options[int.from_bytes(digest, "little") % len(options)]


class ExtractiveTeacher:
    """Deterministic P2/I1/I2 from facets and reviews (see module docstring)."""

    name = "extractive"

    def __init__(self, top_facets: int = 4, item_noun: str | None = None, max_sentence_words: int = 40) -> None:
        self.top_facets = top_facets
        """How many salient facets a preference mentions."""
        self.item_noun = item_noun
        """Plural noun for the catalogue ('games', 'movies'); None = guess from the data."""
        self.max_sentence_words = max_sentence_words
        """Longest review sentence accepted as a vague intention."""
        self._facets: ItemFacets | None = None
        self._titles: Sequence[str] = ()
        self._reviews: dict[tuple[str, str], str] = {}
        self._item_ids: Sequence[str] = ()

    def fingerprint(self) -> str:
        return f"extractive-v1:top={self.top_facets}:noun={self.item_noun}:words={self.max_sentence_words}"

    def fit(self, dataset: Dataset, facets: ItemFacets | None = None) -> ExtractiveTeacher:
        self._facets = facets or compute_facets(dataset)
        self._titles = [str(t) for t in dataset.titles]
        self._item_ids = [str(i) for i in dataset.item_ids]
        revs = dataset.reviews
        self._reviews = {
            (str(u), str(i)): str(t)
            for u, i, t in zip(revs["user_id"], revs["item_id"], revs["text"], strict=True) if t
        }
        if self.item_noun is None:
            source = dataset.manifest.source.lower()
            with_platform = sum(any(k == "platform" for k, _ in f) for f in self._facets.facets)
            self.item_noun = ("movies" if "movielens" in source or "ml-" in source
                              else "games" if with_platform > 0.2 * max(dataset.n_items, 1) else "items")
        return self

    @property
    def facets(self) -> ItemFacets:
        if self._facets is None:
            raise TeacherError("the extractive teacher is not fitted: call teacher.fit(dataset) first.")
        return self._facets

    def review_of(self, user_id: str, item: int) -> str | None:
        return self._reviews.get((str(user_id), self._item_ids[item])) if self._item_ids else None

    # -- the three kinds ----------------------------------------------------------------------
    def answer(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        out = []
        for req in requests:
            if req.kind == "preference":
                out.append(self.preference(req.history))
            elif req.kind == "specific_intention":
                out.append(self.specific_intention(req.item))
            else:
                review = req.review if req.review is not None else self.review_of(req.user_id, req.item)
                out.append(self.vague_intention(req.item, review, req.user_id))
        return out

    def preference(self, history: Sequence[int]) -> TeacherAnswer:
        if len(history) == 0:
            return TeacherAnswer("I have no particular preferences yet and am open to suggestions.",
                                 "fallback:empty-history")
        found = salient_facets(self.facets, list(history), top=self.top_facets)
        if not found:
            return TeacherAnswer(f"I like trying a wide range of {self.item_noun}.", "fallback:no-facets")
        by_type: dict[str, list[str]] = {}
        for kind, value in found:
            by_type.setdefault(kind, []).append(value)
        noun = self.item_noun
        phrases = {
            "platform": lambda v: f"I mostly play on {_join(v)}.",
            "franchise": lambda v: f"I am a fan of the {_join(v)} series.",
            "genre": lambda v: f"I enjoy {_join(v)} {noun}.",
            "category": lambda v: f"I enjoy {_join(v)} {noun}.",
            "kind": lambda v: f"I often buy gear such as {_join([k + 's' for k in v])}.",
            "brand": lambda v: f"I like products from {_join(v)}.",
            "decade": lambda v: f"I lean towards {noun} from the {_join(v)}.",
        }
        text = " ".join(phrases[kind](values) for kind, values in by_type.items() if kind in phrases)
        return TeacherAnswer(text, "tfidf")

    def _facet_values(self, item: int) -> dict[str, list[str]]:
        values: dict[str, list[str]] = {}
        title = self._titles[item]
        core = normalise(title_core(title))
        for kind, value in self.facets.facets[item]:
            if kind == "franchise" and normalise(value) in (core, normalise(title)):
                continue  # the franchise *is* the title: naming it would give the answer away
            values.setdefault(kind, []).append(value)
        return values

    def specific_intention(self, item: int) -> TeacherAnswer:
        values = self._facet_values(item)
        noun = self.item_noun.rstrip("s") if self.item_noun else "item"
        cats = values.get("category") or values.get("genre")
        kinds = [k for k in values.get("kind", []) if k not in ("collector's edition", "digital download")]
        if kinds:
            head = _a(kinds[0])
        elif cats:
            head = _a(f"{_join(cats[:3])} {noun}")
        else:
            head = _a(noun)
        parts = [head]
        if values.get("platform"):
            parts.append(f"for {values['platform'][0]}")
        if values.get("franchise"):
            parts.append(f"from the {values['franchise'][0]} series")
        if values.get("brand") and (kinds or not values.get("franchise")):
            parts.append(f"by {values['brand'][0]}")
        if values.get("decade"):
            parts.append(f"from the {values['decade'][0]}")
        if "collector's edition" in values.get("kind", []):
            parts.append("in a collector's edition")
        if "digital download" in values.get("kind", []):
            parts.append("as a digital download")
        if len(parts) == 1 and head == _a(noun):
            return TeacherAnswer(f"a well-reviewed {noun} I have not tried before", "fallback:no-facets")
        text = " ".join(parts)
        if leaks_title(text, self._titles[item]):  # e.g. a title that is just a platform name
            return TeacherAnswer(f"a well-reviewed {noun} I have not tried before", "fallback:title-leak")
        source = "categories" if values.get("category") else "title-keywords"
        return TeacherAnswer(text, source)

    def vague_intention(self, item: int, review: str | None, user_id: str = "") -> TeacherAnswer:
        if review:
            sentence = self._need_sentence(review, item)
            if sentence:
                return TeacherAnswer(sentence, "review")
            reason = "fallback:review-without-need"
        else:
            reason = "fallback:no-review"
        values = self._facet_values(item)
        noun = self.item_noun or "items"
        key = (user_id, item)
        if values.get("kind") and values.get("platform"):
            text = _pick([f"I need a new {values['kind'][0]} for my {values['platform'][0]}.",
                          f"My {values['platform'][0]} setup is missing something."], *key)
        elif values.get("platform"):
            text = _pick([f"I want something new to play on my {values['platform'][0]}.",
                          f"I am bored and looking for a new {noun.rstrip('s')} for my {values['platform'][0]}."], *key)
        elif values.get("category") or values.get("genre"):
            cat = (values.get("category") or values["genre"])[0]
            text = _pick([f"I am in the mood for a good {cat.lower()} {noun.rstrip('s')}.",
                          f"I feel like {_a(cat.lower())} {noun.rstrip('s')} tonight."], *key)
        elif values.get("kind"):
            text = f"I am looking for {_a(values['kind'][0])}."
        else:
            return TeacherAnswer(f"I am looking for something new to try among {noun}.", reason + "+generic")
        if leaks_title(text, self._titles[item]):  # e.g. the item *is* a console called "Wii"
            return TeacherAnswer(f"I am looking for something new to try among {noun}.", "fallback:title-leak")
        return TeacherAnswer(text, reason)

    def _need_sentence(self, review: str, item: int) -> str | None:
        title = self._titles[item]
        masks = {title, title.split(":", 1)[0].strip()}
        masks |= {v for k, v in self.facets.facets[item] if k == "franchise"}
        pattern = re.compile("|".join(re.escape(m) for m in sorted(masks, key=len, reverse=True) if len(m) >= 3), re.I)
        best, best_score = None, 0
        for raw in _SENTENCE.split(review):
            sentence = _TAG.sub(" ", raw).strip()
            words = sentence.split()
            if not (4 <= len(words) <= self.max_sentence_words):
                continue
            score = len(_NEED_CUES.findall(sentence))
            if score > best_score:
                best, best_score = sentence, score
        if best is None:
            return None
        best = pattern.sub("this item", best) if pattern.pattern else best
        return None if leaks_title(best, title) else best
