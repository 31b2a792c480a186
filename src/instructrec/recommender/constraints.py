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
  (below the catalogue's, or the previous answer's, median price), "expensive";
* platforms where item texts name them (`lexicon.PLATFORMS`: "for PS4", "on my switch", "an Xbox
  game"; several named: any of them), and "not for PS4";
* brands: a brand the catalogue's `brand` field holds, a capitalised name after "by", "from" or
  "made by" (or before "brand") that some item's title or brand carries ("a mouse from Logitech"),
  or a bare capitalised word that begins at least `BRAND_LEAD_MIN` titles ("a Samsung phone case":
  store titles lead with the maker, where a brand field is often empty); items whose brand is, or
  whose title names, that brand keep it; "nothing from Apple" excludes it;
* "not X" for any other word: the first word after a negation that is no category, platform or
  bound ("dog toys, not squeaky ones") leaves out items whose title says it.

The recommender keeps only items that satisfy every constraint (`Catalogue.mask`), says which it
applied (`Constraints.describe`), and answers "nothing matches" instead of unrelated items when
none does. Items whose year or price is unknown fail a year or price bound: the answer must be
checkable. Rules are transparent on purpose: the answer can say exactly what was read.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.recommender.lexicon import (
    EXCLUDE_STOPWORDS,
    NEGATIONS,
    PLATFORM_REQUEST_ONLY,
    PLATFORMS,
    SYNONYMS,
)

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
_PRICE_MIN = re.compile(r"(?<!no )\b(?:over|above|more than|at least|min(?:imum)?)\s*(?:" + _MONEY + ")")
_YEAR_BOUND = re.compile(r"\b(before|until|up to|pre|older than|earlier than|after|since|post|newer than|later than|"
                         r"from|in)\s+(?:the\s+year\s+)?((?:19|20)\d\d)\b(?!s)")
_YEAR_RANGE = re.compile(r"\bbetween\s+((?:19|20)\d\d)\s+and\s+((?:19|20)\d\d)\b")
_DECADE = re.compile(r"(?<![\w$])(?:(19|20)(\d)0|'?(\d)0)'?s\b")
_WORDS = re.compile(r"[\w'&-]+")
PLATFORMS_MIN = 10
"""A catalogue reads platforms when at least this many item texts (or a quarter of a small
catalogue's) name one: a film catalogue with one "Mac" in a title does not."""
BRAND_LEAD_MIN = 3
"""A bare capitalised request word is read as a brand when at least this many titles begin with it
(case aside): "Samsung ..." leads store titles; a film title's first word rarely leads three."""
_CAPITALISED = re.compile(r"(?<![\w'&.-])([A-Z][\w&'-]*[\w])")
_BRAND_CUE = re.compile(r"\b(?:made by|by|from)\s+((?:[A-Z0-9][\w&'.-]*)(?:\s+[A-Z][\w&'.-]*){0,2})"
                        r"|\b([A-Z][\w&'.-]*(?:\s+[A-Z][\w&'.-]*){0,2})\s+(?:brand|branded)\b")
_EXCLUDE_NEG = frozenset(["not", "no", "without", "except", "avoid", "exclude", "skip", "hate", "nothing", "never",
                          "none", "excluding"])
_EXCLUDE_SKIP = EXCLUDE_STOPWORDS | {
    "want", "like", "over", "under", "below", "above", "before", "after", "since", "less", "least", "most",
    "cheap", "cheaper", "expensive", "pricey", "old", "older", "new", "newer", "recent", "classic", "sequel",
    "sequels", "but", "and", "or", "please", "thanks", "matter", "problem", "idea", "mind", "need", "needed"}


def _norm(text: str) -> str:
    """Lower case, punctuation other than ' & - $ . spaced out: phrases match on word boundaries."""
    return " " + re.sub(r"[^\w'&$.-]+", " ", text.casefold()).replace("’", "'") + " "


def _phrase(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])")


def _spaced(regex: str) -> re.Pattern[str]:
    """`regex` as a whole word in `_norm`ed text (words there follow a space): a leading literal
    space lets the engine skip ahead, where a look-behind is tried at every character."""
    return re.compile(r" (?:" + regex + r")(?![\w-])")


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
    platforms: tuple[str, ...] = ()
    """Platforms (`lexicon.PLATFORMS` names) the items must name, any of them."""
    exclude_platforms: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    """Brands the items must carry (brand field or title), any of them."""
    exclude_brands: tuple[str, ...] = ()
    exclude_words: tuple[str, ...] = ()
    """Words ("not squeaky") the items' titles must not contain."""

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude or self.no_sequels or self.year_min is not None
                    or self.year_max is not None or self.price_min is not None or self.price_max is not None
                    or self.platforms or self.exclude_platforms or self.brands or self.exclude_brands
                    or self.exclude_words)

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
        if self.platforms:
            out.append("platform " + " or ".join(
                f"{p} ({self.named[p]!r})" if self.named.get(p, p.casefold()) != p.casefold() else p
                for p in self.platforms))
        out += [f"not for {p}" for p in self.exclude_platforms]
        if self.brands:
            out.append("brand " + " or ".join(self.brands))
        out += [f"not from {b}" for b in self.exclude_brands]
        out += [f"not {w!r}" for w in self.exclude_words]
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
            tuple(dict.fromkeys(self.ignored + later.ignored)), later.instead,
            platforms=_refined(self.platforms, self.exclude_platforms, later.platforms, later.exclude_platforms,
                               later.instead)[0],
            exclude_platforms=_refined(self.platforms, self.exclude_platforms, later.platforms,
                                       later.exclude_platforms, later.instead)[1],
            brands=_refined(self.brands, self.exclude_brands, later.brands, later.exclude_brands, later.instead)[0],
            exclude_brands=_refined(self.brands, self.exclude_brands, later.brands, later.exclude_brands,
                                    later.instead)[1],
            exclude_words=tuple(dict.fromkeys(self.exclude_words + later.exclude_words)))


def _refined(keep: tuple[str, ...], drop: tuple[str, ...], later_keep: tuple[str, ...], later_drop: tuple[str, ...],
             instead: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(include, exclude) of one attribute after a later turn: a later turn naming values replaces
    the earlier ones ("for PS4" then "for Xbox instead" or just "for Xbox"), its exclusions add."""
    include = later_keep if later_keep else tuple(v for v in keep if v not in later_drop)
    exclude = tuple(dict.fromkeys([v for v in drop if v not in later_keep] + list(later_drop)))
    return include, exclude


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
        # Platforms and brands are read from the item texts: titles name the console ("... - PS4").
        brand_col = items["brand"] if "brand" in items.columns else [None] * self.n_items
        self._brand = [str(b).strip().casefold() if isinstance(b, str) and b.strip() else "" for b in brand_col]
        self._title = [_norm(f"{t} {b}") for t, b in zip(dataset.titles, self._brand, strict=True)]
        desc = items["description"] if "description" in items.columns else [None] * self.n_items
        texts = [f"{t} {' '.join(sorted(c))} {d if isinstance(d, str) else ''}"
                 for t, c, d in zip(self._title, self.categories, desc, strict=True)]
        texts = _Texts([_norm(t) for t in texts])
        self._titles = _Texts(self._title)
        self._platform_index = {name: np.logical_or.reduce([texts.hits(p) for p in pats])
                                for name, pats in _PLATFORM_PATTERNS.items()}
        named_any = int(np.logical_or.reduce(list(self._platform_index.values())).sum())
        self.has_platforms = named_any >= min(PLATFORMS_MIN, max(1, self.n_items // 4))
        self._brand_names = {b.strip().casefold(): b.strip() for b in brand_col
                             if isinstance(b, str) and len(b.strip()) > 2 and b.strip().casefold() not in _PSEUDO}
        """Brand (lower case) -> as the catalogue spells it."""
        self._brand_terms = [(_phrase(b), b) for b in sorted(self._brand_names, key=len, reverse=True)]
        firsts = (_WORDS.match(str(t).strip()) for t in dataset.titles)
        leads = Counter(f.group(0).casefold() for f in firsts if f and f.group(0)[:1].isupper())
        self._lead_brands = {w for w, n in leads.items() if n >= BRAND_LEAD_MIN and len(w) > 2
                             and w not in EXCLUDE_STOPWORDS and not w.isdigit()}
        """Title-leading words (lower case) that a bare capitalised request word may name as a brand."""
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
                negated = _negated(low, m.start())
                if negated and _PLATFORM_WORD.fullmatch(term):
                    continue  # "not for PS4" leaves out a platform, not every video game
                found += [(m.start(), negated, c, term) for c in cats]
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
        platforms, no_platforms = self._platforms(low, taken, named, ignored)
        brands, no_brands = self._brands(text, low, taken)
        exclude_words = self._exclusions(low, taken)
        return Constraints(tuple(include), any_of, tuple(exclude), year_min, year_max, price_min, price_max,
                           no_sequels, named, tuple(ignored), instead, tuple(platforms), tuple(no_platforms),
                           tuple(brands), tuple(no_brands), tuple(exclude_words))

    def _platforms(self, low: str, taken: np.ndarray, named: dict[str, str],
                   ignored: list[str]) -> tuple[list[str], list[str]]:
        found: list[tuple[int, bool, str]] = []
        mine = np.zeros(len(low), dtype=bool)  # platform words may also name a category ("ps4": Video Games)
        for pattern, name in _PLATFORM_REQUEST:
            for m in pattern.finditer(low):
                if mine[m.start():m.end()].any():
                    continue
                mine[m.start():m.end()] = True
                found.append((m.start(), _negated(low, m.start()), name))
                named.setdefault(name, m.group(0).strip())
        taken |= mine
        if found and not self.has_platforms:
            ignored.append("a platform (this catalogue's items name none)")
            return [], []
        found.sort()
        drop = list(dict.fromkeys(n for _, neg, n in found if neg))
        return list(dict.fromkeys(n for _, neg, n in found if not neg and n not in drop)), drop

    def _brands(self, text: str, low: str, taken: np.ndarray) -> tuple[list[str], list[str]]:
        found: list[tuple[int, bool, str]] = []
        for pattern, brand in self._brand_terms:  # brands the catalogue's brand field holds
            for m in pattern.finditer(low):
                if not taken[m.start():m.end()].any():
                    taken[m.start():m.end()] = True
                    found.append((m.start(), _negated(low, m.start()), self._brand_names[brand]))
        for m in _BRAND_CUE.finditer(text):  # "from Logitech": a name some item's title carries
            name = (m.group(1) or m.group(2)).strip(" .'")
            key = _norm(name).strip()
            if len(key) < 2 or key in self._brand_names:
                continue
            if key.split()[0] in EXCLUDE_STOPWORDS or re.fullmatch(r"[\d\s.]+", key):
                continue
            if not self._titles.hits(_spaced(re.escape(key))).any():
                continue
            if (span := _claim(low, key, taken)) is not None:
                found.append((span, _negated(low, span + 1), name))
        for m in _CAPITALISED.finditer(text):  # "a Samsung phone case": a word many titles begin with
            key = m.group(1).casefold()
            # a request's first word too: the lead set holds no articles or stopwords
            if key in self._lead_brands and (span := _claim(low, key, taken)) is not None:
                found.append((span, _negated(low, span + 1), m.group(1)))
        found.sort()
        drop = list(dict.fromkeys(b for _, neg, b in found if neg))
        return list(dict.fromkeys(b for _, neg, b in found if not neg and b not in drop)), drop

    def _exclusions(self, low: str, taken: np.ndarray) -> list[str]:
        """Words after a negation that nothing else read ("not squeaky"), where some title has them."""
        tokens = list(_WORDS.finditer(low))
        out: list[str] = []
        for i, tok in enumerate(tokens):
            if tok.group(0) not in _EXCLUDE_NEG and not (tok.group(0) in ("don't", "dont") and i + 1 < len(tokens)
                                                         and tokens[i + 1].group(0) == "want"):
                continue
            for nxt in tokens[i + 1:i + 4]:
                word = nxt.group(0)
                if taken[nxt.start():nxt.end()].any() or word in _EXCLUDE_NEG:
                    break
                if word in _EXCLUDE_SKIP or word.replace(".", "").isdigit() or len(word) < 3:
                    continue
                if self._titles.hits(_spaced(re.escape(word))).any():
                    out.append(word)
                break
        return list(dict.fromkeys(out))

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
        if c.platforms:
            keep &= np.logical_or.reduce([self._platform_index[p] for p in c.platforms])
        for p in c.exclude_platforms:
            keep &= ~self._platform_index[p]
        if c.brands:
            keep &= np.logical_or.reduce([self._brand_mask(b) for b in c.brands])
        for b in c.exclude_brands:
            keep &= ~self._brand_mask(b)
        for w in c.exclude_words:
            keep &= ~self._word_mask(w)
        return keep

    def _brand_mask(self, brand: str) -> np.ndarray:
        key = _norm(brand).strip()
        return np.asarray([b == key for b in self._brand]) | self._word_mask(key)

    def _word_mask(self, word: str) -> np.ndarray:
        return self._titles.hits(_spaced(re.escape(_norm(word).strip())))

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
        out += [p for p in c.platforms if self._platform_index[p][item]]
        out += [b for b in c.brands if self._brand_mask(b)[item]]
        return out


class _Texts:
    """Item texts joined into one string: a pattern is searched once over the catalogue, not once
    per item (thousands of look-behind searches took seconds)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.n = len(texts)
        self.joined = "\n".join(texts)
        self.starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]) if texts else np.zeros(0, dtype=np.int64)

    def hits(self, pattern: re.Pattern[str]) -> np.ndarray:
        """Items whose text the pattern matches (it must not match across the newline)."""
        out = np.zeros(self.n, dtype=bool)
        pos = [m.start() for m in pattern.finditer(self.joined)]
        if pos:
            out[np.searchsorted(self.starts, pos, side="right") - 1] = True
        return out


_PLATFORM_PATTERNS = {name: [_spaced(p) for p in pats]
                      for name, pats in PLATFORMS.items()}
_PLATFORM_REQUEST = sorted(
    [(re.compile(r"(?<![\w-])" + p + r"(?![\w-])"), name)
     for name, pats in {**PLATFORMS, **{k: PLATFORMS[k] + v for k, v in PLATFORM_REQUEST_ONLY.items()}}.items()
     for p in pats if not (name == "PlayStation" and p != "playstation")
     and not (name == "Nintendo" and p != "nintendo")],
    key=lambda x: -len(x[0].pattern))
"""Request side: longest first ("playstation 4" before "playstation"); a family is named by its own word."""
_PLATFORM_WORD = re.compile("|".join(p.pattern.removeprefix(r"(?<![\w-])").removesuffix(r"(?![\w-])")
                                     for p, _ in _PLATFORM_REQUEST))


def _claim(low: str, key: str, taken: np.ndarray) -> int | None:
    """Where `key` first stands as whole words in `low` (its leading space), marked read, if
    nothing read that span yet; else None."""
    span = low.find(" " + key + " ")
    if span < 0 or taken[span + 1:span + 1 + len(key)].any():
        return None
    taken[span + 1:span + 1 + len(key)] = True
    return span


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

