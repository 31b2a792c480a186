"""Constraints a user names are kept: catalogue attributes in a request become filters.

`Catalogue(dataset).parse("a scary film from the 90s, nothing with sequels")` reads:

* categories/genres the catalogue has, by name or everyday word (`lexicon.SYNONYMS`: "scary" ->
  Horror, "kids" -> Children's); several named together must all hold ("a romantic comedy"),
  unless joined by "or" or unless too few items carry them all (then any of them);
* exclusions: a category or "sequels" after a negation ("no horror", "nothing too scary",
  "no more sequels");
* year bounds: decades ("the 90s", "nineties", "1980s"), "before/after/since/in YEAR", and the
  relative "older"/"classic" and "recent"/"newer" (the catalogue's first/last quartile of years,
  or, when refining an answer, older/newer than that answer's median);
* price bounds where items have prices: "under $20", "over 50 dollars", "cheap"/"cheaper"
  (below the catalogue's, or the previous answer's, median price), "expensive".

The recommender keeps only items that satisfy every constraint (`Catalogue.mask`), says which it
applied (`Constraints.describe`), and answers "nothing matches" instead of unrelated items when
none does. Items whose year or price is unknown fail a year or price bound: the answer must be
checkable. Rules are transparent on purpose: the answer can say exactly what was read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.recommender.lexicon import NEGATIONS, SYNONYMS

ALL_OF_MIN = 10
"""Several named categories must all hold when at least this many items carry them all."""
_PSEUDO = {"", "unknown", "none", "other", "misc"}
_SEQUEL = re.compile(r"\b(?:[2-9]|II|III|IV|VI|VII|Part\s+(?:\w+))\b(?!\s*(?:days|men|women|weeks|hours))",
                     re.IGNORECASE)
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
_OLD = re.compile(r"(?<!year )(?<!years )(?<!year-)(?<!years-)\b(?:older|old|classic|classics|vintage|oldies|golden age)\b")
_NEW = re.compile(r"\b(?:recent|newer|newest|latest|modern|new releases?|brand new)\b")
_CHEAP = re.compile(r"\b(?:cheap|cheaper|cheapest|inexpensive|budget|affordable|low[- ]cost|bargain|less expensive)\b")
_DEAR = re.compile(r"(?<!less )(?<!not )\b(?:expensive|pricier|high[- ]end|pricey|splurge)\b")
_MONEY = r"\$\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*(?:\$|dollars?|bucks|usd)\b"
_PRICE_MAX = re.compile(r"\b(?:under|below|less than|cheaper than|at most|up to|max(?:imum)?|no more than|within)\s*"
                        r"(?:" + _MONEY + ")")
_PRICE_MIN = re.compile(r"\b(?:over|above|more than|at least|min(?:imum)?)\s*(?:" + _MONEY + ")")
_YEAR_BOUND = re.compile(r"\b(before|until|up to|pre|older than|earlier than|after|since|post|newer than|later than|"
                         r"from|in)\s+(?:the\s+year\s+)?((?:19|20)\d\d)\b(?!s)")
_YEAR_RANGE = re.compile(r"\bbetween\s+((?:19|20)\d\d)\s+and\s+((?:19|20)\d\d)\b")
_DECADE = re.compile(r"(?<![\w$])(?:(19|20)(\d)0|'?(\d)0)'?s\b")
_WORDS = re.compile(r"[\w'&-]+")


def _norm(text: str) -> str:
    """Lower case, punctuation other than ' & - $ . spaced out: phrases match on word boundaries."""
    return " " + re.sub(r"[^\w'&$.-]+", " ", text.casefold()).replace("’", "'") + " "


def _phrase(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])")


@dataclass(frozen=True)
class Constraints:
    """What a request (and the turns before it) asks the answer to keep."""

    include: tuple[str, ...] = ()
    """Categories (catalogue spelling) the items must carry (all of them; see `any_of`)."""
    any_of: bool = False
    """The request joined the categories with "or": one of them is enough."""
    exclude: tuple[str, ...] = ()
    """Categories the items must not carry."""
    year_min: int | None = None
    year_max: int | None = None
    price_min: float | None = None
    price_max: float | None = None
    no_sequels: bool = False
    named: dict[str, str] = field(default_factory=dict, compare=False)
    """Category -> the words that named it ("Horror" -> "scary"), for the answer's explanation."""
    ignored: tuple[str, ...] = ()
    """Bounds the request named that the catalogue cannot check (e.g. a price without prices)."""
    instead: bool = False
    """The request replaces earlier categories ("a horror film instead") rather than adding to them."""

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude or self.no_sequels or self.year_min is not None
                    or self.year_max is not None or self.price_min is not None or self.price_max is not None)

    def describe(self) -> list[str]:
        """One readable line per constraint applied (the API's `constraints` field)."""
        out = []
        joiner = " or " if self.any_of else " and "
        if self.include:
            words = [f"{c} ({self.named[c]!r})" if self.named.get(c, c.casefold()) != c.casefold() else c
                     for c in self.include]
            out.append("category " + joiner.join(words))
        out += [f"not {c}" for c in self.exclude]
        if self.year_min is not None and self.year_max is not None:
            out.append(f"year {self.year_min}-{self.year_max}" if self.year_min != self.year_max
                       else f"year {self.year_min}")
        elif self.year_min is not None:
            out.append(f"year >= {self.year_min}")
        elif self.year_max is not None:
            out.append(f"year <= {self.year_max}")
        if self.price_min is not None:
            out.append(f"price >= ${self.price_min:.2f}")
        if self.price_max is not None:
            out.append(f"price <= ${self.price_max:.2f}")
        if self.no_sequels:
            out.append("no sequels")
        return out

    def then(self, later: Constraints) -> Constraints:
        """These constraints refined by a later turn: the later turn wins where they conflict
        ("no comedy" then "ok, a comedy"), bounds it names replace earlier ones, the rest stays."""
        kept = [] if later.instead and later.include else [c for c in self.include if c not in later.exclude]
        include = tuple(dict.fromkeys(kept + list(later.include)))
        exclude = tuple(dict.fromkeys([c for c in self.exclude if c not in later.include] + list(later.exclude)))
        pick = lambda a, b: b if b is not None else a  # noqa: E731
        return Constraints(
            include, later.any_of if later.include else self.any_of, exclude,
            pick(self.year_min, later.year_min), pick(self.year_max, later.year_max),
            pick(self.price_min, later.price_min), pick(self.price_max, later.price_max),
            self.no_sequels or later.no_sequels, {**self.named, **later.named},
            tuple(dict.fromkeys(self.ignored + later.ignored)), later.instead)


class Catalogue:
    """A dataset's checkable attributes (categories, year, price, sequel titles) and the words that
    name them; parses requests into `Constraints` and applies them as item masks."""

    def __init__(self, dataset: Dataset) -> None:
        items = dataset.items
        self.n_items = dataset.n_items
        self.categories = [frozenset(str(c) for c in (cats if cats is not None else ())) for cats in
                           items["categories"]]
        self.year = np.asarray(items["year"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan))
        self.price = np.asarray(items["price"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan))
        self.sequel = np.asarray([bool(_SEQUEL.search(str(t))) for t in dataset.titles])
        names = sorted({c for cats in self.categories for c in cats if c.casefold() not in _PSEUDO})
        self._cat_index = {c: np.asarray([c in cats for cats in self.categories]) for c in names}
        terms: dict[str, set[str]] = {}
        for name in names:
            low = name.casefold()
            plain = re.sub(r"[^\w&]+", " ", low.replace("'", "")).strip()  # "film-noir" -> "film noir"
            variants = {low, plain}
            for key in (low, plain):
                variants |= set(SYNONYMS.get(key, ()))
            for v in variants:
                if len(v) > 2:
                    terms.setdefault(v, set()).add(name)
        # Longest first: "science fiction" is read before "fiction" could be.
        self._terms = [(_phrase(t), t, sorted(cats)) for t, cats in sorted(terms.items(), key=lambda x: -len(x[0]))]
        years = self.year[np.isfinite(self.year)]
        prices = self.price[np.isfinite(self.price)]
        self.has_years, self.has_prices = len(years) > 0, len(prices) > 0
        self._old = int(np.percentile(years, 25)) if len(years) else None
        self._new = int(np.percentile(years, 75)) if len(years) else None
        self._cheap = float(np.median(prices)) if len(prices) else None
        self._dear = float(np.percentile(prices, 75)) if len(prices) else None

    @property
    def category_names(self) -> list[str]:
        return list(self._cat_index)

    # -- reading -----------------------------------------------------------------------------
    def parse(self, text: str | None, previous: Sequence[int] = ()) -> Constraints:
        """The constraints one request names; `previous` (the item indices of the answer it refines)
        anchors "older", "cheaper" and the like to that answer instead of the whole catalogue."""
        if not text or not text.strip():
            return Constraints()
        low = _norm(text)
        found: list[tuple[int, bool, str, str]] = []  # (position, negated, category, words)
        taken = np.zeros(len(low), dtype=bool)
        for pattern, term, cats in self._terms:
            for m in pattern.finditer(low):
                if taken[m.start():m.end()].any():
                    continue
                taken[m.start():m.end()] = True
                found += [(m.start(), _negated(low, m.start()), c, term) for c in cats]
        found.sort()  # in the order the request names them
        exclude = list(dict.fromkeys(c for _, neg, c, _ in found if neg))
        include = list(dict.fromkeys(c for _, neg, c, _ in found if not neg and c not in exclude))
        named: dict[str, str] = {}
        for _, _, c, term in found:
            named.setdefault(c, term)
        any_of = bool(re.search(r"\bor\b|\beither\b", low)) and len(include) > 1
        ignored: list[str] = []
        year_min, year_max = self._years(low, previous)
        price_min, price_max = self._prices(low, previous, ignored)
        if (year_min is not None or year_max is not None) and not self.has_years:
            ignored.append("a year bound (this catalogue has no years)")
            year_min = year_max = None
        no_sequels = bool(re.search(r"sequels?\b", low)) and _negated(low, low.find("sequel"))
        instead = bool(re.search(r"\b(?:instead|rather|actually|switch to)\b", low))
        return Constraints(tuple(include), any_of, tuple(exclude), year_min, year_max, price_min, price_max,
                           no_sequels, named, tuple(ignored), instead)

    def _years(self, low: str, previous: Sequence[int]) -> tuple[int | None, int | None]:
        lo: int | None = None
        hi: int | None = None
        for m in _DECADE.finditer(low):
            if m.group(1):
                start = int(m.group(1) + m.group(2) + "0")
            else:
                d = int(m.group(3))
                start = (2000 if d <= 2 else 1900) + 10 * d
            lo, hi = start, start + 9
        for word, start in _DECADE_WORDS.items():
            if re.search(rf"\b{word}\b", low):
                lo, hi = start, start + 9
        for m in _YEAR_RANGE.finditer(low):
            a, b = sorted((int(m.group(1)), int(m.group(2))))
            lo, hi = a, b
        for m in _YEAR_BOUND.finditer(low):
            word, year = m.group(1), int(m.group(2))
            if word in ("before", "pre", "older than", "earlier than"):
                hi = year - 1
            elif word in ("until", "up to"):
                hi = year
            elif word in ("after", "post", "newer than", "later than"):
                lo = year + 1
            elif word == "since":
                lo = year
            else:  # "from 1995", "in 1995": that year
                lo = hi = year
        ref = self.year[np.asarray(previous, dtype=np.int64)] if len(previous) else np.zeros(0)
        ref = ref[np.isfinite(ref)]
        if _OLD.search(low) and hi is None:
            hi = int(np.median(ref)) - 1 if len(ref) else self._old
        if _NEW.search(low) and lo is None:
            lo = int(np.median(ref)) + 1 if len(ref) else self._new
        return lo, hi

    def _prices(self, low: str, previous: Sequence[int], ignored: list[str]) -> tuple[float | None, float | None]:
        lo: float | None = None
        hi: float | None = None
        for m in _PRICE_MAX.finditer(low):
            hi = float(m.group(1) or m.group(2))
        for m in _PRICE_MIN.finditer(low):
            lo = float(m.group(1) or m.group(2))
        ref = self.price[np.asarray(previous, dtype=np.int64)] if len(previous) else np.zeros(0)
        ref = ref[np.isfinite(ref)]
        if _CHEAP.search(low) and hi is None:
            hi = float(np.median(ref)) * 0.999 if len(ref) else self._cheap
        if _DEAR.search(low) and lo is None:
            lo = float(np.median(ref)) * 1.001 if len(ref) else self._dear
        named = lo is not None or hi is not None or _CHEAP.search(low) or _DEAR.search(low)
        if named and not self.has_prices:
            ignored.append("a price bound (this catalogue has no prices)")
            return None, None
        return lo, hi

    # -- applying ----------------------------------------------------------------------------
    def mask(self, c: Constraints) -> np.ndarray:
        """Items that satisfy every constraint (a bool array over item indices)."""
        keep = np.ones(self.n_items, dtype=bool)
        if c.include:
            carried = [self._cat_index[name] for name in c.include if name in self._cat_index]
            if carried:
                every = np.logical_and.reduce(carried)
                use_all = not c.any_of and int(every.sum()) >= ALL_OF_MIN
                keep &= every if use_all else np.logical_or.reduce(carried)
        for name in c.exclude:
            if name in self._cat_index:
                keep &= ~self._cat_index[name]
        with np.errstate(invalid="ignore"):
            if c.year_min is not None:
                keep &= self.year >= c.year_min
            if c.year_max is not None:
                keep &= self.year <= c.year_max
            if c.price_min is not None:
                keep &= self.price >= c.price_min
            if c.price_max is not None:
                keep &= self.price <= c.price_max
        if c.no_sequels:
            keep &= ~self.sequel
        return keep

    def all_of_relaxed(self, c: Constraints) -> bool:
        """Whether several named categories were relaxed to "any of" (too few items carry all)."""
        if c.any_of or len(c.include) < 2:
            return False
        carried = [self._cat_index[n] for n in c.include if n in self._cat_index]
        return len(carried) > 1 and int(np.logical_and.reduce(carried).sum()) < ALL_OF_MIN

    def matched(self, item: int, c: Constraints) -> list[str]:
        """The constraint attributes item `item` carries (for its one-line reason)."""
        out = [name for name in c.include if name in self.categories[item]]
        if (c.year_min is not None or c.year_max is not None) and np.isfinite(self.year[item]):
            out.append(str(int(self.year[item])))
        if (c.price_min is not None or c.price_max is not None) and np.isfinite(self.price[item]):
            out.append(f"${self.price[item]:.2f}")
        return out


def _negated(low: str, start: int) -> bool:
    """Whether a negation stands within the three words before position `start`."""
    before = _WORDS.findall(low[:start])[-3:]
    window = " " + " ".join(before) + " "
    if re.search(r"\b(?:but|and|or|with)\b\s*$", window) and not re.search(r"anything but\s*$", window):
        return False
    return any(re.search(r"(?<![\w'])" + re.escape(n) + r"(?![\w'])", window) for n in NEGATIONS)


def refine(first: Constraints, *later: Constraints) -> Constraints:
    """Constraints of a conversation: each turn refines the ones before (`Constraints.then`)."""
    out = first
    for c in later:
        out = out.then(c)
    return out

