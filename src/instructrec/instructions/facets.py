"""Item facets: the typed keywords (platform, franchise, genre, kind, brand, category, decade) that
the extractive teacher writes preferences and intentions from.

Catalogues like the Games data carry nothing but a title, so facets are read from titles with
small hand-kept vocabularies (platforms, genres, item kinds, brands; a product need, no library
has them) plus franchises found in the catalogue itself: a title's leading name, cut at ':' or
' - ' and stripped of sequel numbers, counts as a franchise when at least two items share it.
Where items have category labels (MovieLens genres, Amazon categories) those are facets too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from instructrec.data.dataset import Dataset

# (pattern, canonical name); order matters: longer names first so "Xbox 360" wins over "Xbox".
PLATFORMS: list[tuple[str, str]] = [
    (r"playstation\s*vita|ps\s*vita|\bpsv\b", "PlayStation Vita"),
    (r"playstation\s*4|\bps4\b", "PlayStation 4"),
    (r"playstation\s*3|\bps3\b", "PlayStation 3"),
    (r"playstation\s*2|\bps2\b", "PlayStation 2"),
    (r"\bpsp\b|playstation portable", "PSP"),
    (r"playstation\s*vr|\bpsvr\b", "PlayStation VR"),
    (r"playstation|\bps1\b|\bpsx\b|\bpsone\b", "PlayStation"),
    (r"xbox\s*one", "Xbox One"),
    (r"xbox\s*360", "Xbox 360"),
    (r"\bxbox\b", "Xbox"),
    (r"nintendo\s*switch|\bswitch\b", "Nintendo Switch"),
    (r"wii\s*u\b", "Wii U"),
    (r"\bwii\b", "Wii"),
    (r"\b3ds\b|\b2ds\b", "Nintendo 3DS"),
    (r"\bnds\b|nintendo\s*ds\b|\bds\b|\bdsi\b", "Nintendo DS"),
    (r"game\s*boy\s*advance|\bgba\b", "Game Boy Advance"),
    (r"game\s*boy\s*colou?r|\bgbc\b", "Game Boy Color"),
    (r"game\s*boy|gameboy", "Game Boy"),
    (r"gamecube|game\s*cube|\bngc\b", "GameCube"),
    (r"nintendo\s*64|\bn64\b", "Nintendo 64"),
    (r"super\s*nintendo|\bsnes\b", "Super Nintendo"),
    (r"\bnes\b", "NES"),
    (r"\bpc\b|windows|\bmac\b|steam|\[download\]|\[online game code\]", "PC"),
    (r"dreamcast", "Dreamcast"),
    (r"sega\s*saturn", "Sega Saturn"),
    (r"genesis|mega\s*drive", "Sega Genesis"),
    (r"oculus|\bvive\b", "VR headsets"),
]
GENRES: list[tuple[str, str]] = [
    (r"racing|racer|\bkart\b|\brally\b|need for speed|forza|gran turismo|motorsport", "racing"),
    (r"\brpg\b|role[- ]playing|fantasy|dragon quest|final fantasy|elder scrolls", "role-playing"),
    (r"shooter|\bsniper\b|call of duty|battlefield|halo|counter[- ]strike|doom|wolfenstein", "shooter"),
    (r"puzzle|tetris|sudoku|crossword|brain", "puzzle"),
    (r"fighting|street fighter|tekken|mortal kombat|soulcalibur|smash bros|dragon ball", "fighting"),
    (r"football|soccer|fifa|madden|\bpes\b|\bnfl\b", "football"),
    (r"basketball|\bnba\b", "basketball"),
    (r"baseball|\bmlb\b", "baseball"),
    (r"hockey|\bnhl\b", "hockey"),
    (r"\bgolf|tennis|bowling|skate|snowboard|\bsurf|fishing|hunting|hunter\b", "outdoor sports"),
    (r"wrestling|\bwwe\b|\bufc\b|boxing|fight night", "combat sports"),
    (r"strategy|tactics|civilization|total war|command & conquer|starcraft|tropico|simcity", "strategy"),
    (r"simulator|simulation|\bsims\b|tycoon|farm|flight", "simulation"),
    (r"horror|resident evil|silent hill|zombie|dead space|outlast", "horror"),
    (r"\bparty\b|mario party|trivia|board game|monopoly", "party"),
    (r"\bguitar\b|rock band|\bdance\b|karaoke|singstar|just dance|\bdj\b|music", "music and rhythm"),
    (r"\blego\b", "LEGO"),
    (r"hidden object|mystery|detective|sherlock|nancy drew|mahjong|solitaire|big fish", "casual mystery"),
    (r"adventure|zelda|tomb raider|uncharted|assassin", "adventure"),
    (r"platformer|mario|sonic|crash bandicoot|spyro|rayman|kirby|donkey kong", "platformer"),
    (r"fitness|workout|\bfit\b|yoga|zumba", "fitness"),
    (r"kids|junior|barbie|disney|pixar|dora|scooby|cars\b|toy story|pokemon|pok[eé]mon", "family and kids"),
]
KINDS: list[tuple[str, str]] = [
    (r"controller|gamepad|joystick|joy-con|arcade stick|fight stick|\bremote\b|nunchuk", "controller"),
    (r"headset|headphone|earbud", "headset"),
    (r"steering wheel|racing wheel|\bpedals?\b", "racing wheel"),
    (r"\bcases?\b|\bpouch\b|\bsleeve\b|carrying|travel bag", "carrying case"),
    (r"charg|battery|power supply|\bac adapter|dock", "charger"),
    (r"\bcable\b|\bhdmi\b|adapter|\bav\b|component", "cable or adapter"),
    (r"memory card|hard drive|storage|\bsd card\b|\bgb\b", "storage"),
    (r"keyboard|\bmouse\b|mice\b|mouse pad|mousepad", "keyboard or mouse"),
    (r"amiibo|figure|plush|figurine|statue|skylanders|disney infinity", "collectible figure"),
    (r"\bskin\b|decal|sticker|faceplate|screen protector", "skin or protector"),
    (r"console|system|bundle", "console or bundle"),
    (r"\bcamera\b|kinect|eyetoy|move motion", "camera or motion sensor"),
    (r"collector'?s edition|limited edition|special edition|steelbook", "collector's edition"),
    (r"\[download\]|online game code|digital code|points card|membership|gift card", "digital download"),
]
BRANDS = ["Nintendo", "Sony", "Microsoft", "Sega", "Logitech", "Razer", "Turtle Beach", "Mad Catz", "PDP",
          "PowerA", "Hori", "Nyko", "Astro", "SteelSeries", "Corsair", "HyperX", "Capcom", "Konami",
          "Ubisoft", "Electronic Arts", "Activision", "Square Enix", "Bandai Namco", "Bethesda", "Atlus",
          "Disney", "Marvel", "Star Wars", "Pokemon", "Sonic", "Mario", "Zelda", "LEGO"]

_COMPILED = {
    kind: [(re.compile(pat, re.I), name) for pat, name in table]
    for kind, table in (("platform", PLATFORMS), ("genre", GENRES), ("kind", KINDS))
}
_BRANDS = [(re.compile(r"\b" + re.escape(b) + r"\b", re.I), b) for b in BRANDS]
_SUFFIX = re.compile(r"\s+[-\u2013(\[].*$")
_SEQUEL = re.compile(r"(\s+(\d+|[ivx]+|hd|3d|the video game|game|collection|edition|remastered))+$", re.I)
_SPACE = re.compile(r"\s+")


def title_core(title: str) -> str:
    """The leading name of a title: before ':' or ' - ' / '(' / '[', lower-cased."""
    head = title.split(":", 1)[0]
    head = _SUFFIX.sub("", head)
    return _SPACE.sub(" ", head).strip().lower()


def franchise_key(title: str) -> str:
    return _SEQUEL.sub("", title_core(title)).strip()


def normalise(text: str) -> str:
    return _SPACE.sub(" ", re.sub(r"[^0-9a-z]+", " ", text.lower())).strip()


@dataclass
class ItemFacets:
    """Typed facets of every catalogue item, with inverse document frequencies."""

    facets: list[tuple[tuple[str, str], ...]]
    """Per item index: (facet type, value) pairs, e.g. ("platform", "Nintendo DS")."""
    idf: dict[tuple[str, str], float]
    """log(n_items / document frequency) per facet: rare facets say more about a user."""


def _first(kind: str, text: str) -> list[str]:
    found: list[str] = []
    for pattern, name in _COMPILED[kind]:
        if name not in found and pattern.search(text):
            found.append(name)
            if kind == "platform":
                break  # one platform per title; the first (most specific) match wins
    return found


def compute_facets(dataset: Dataset, min_franchise_items: int = 2) -> ItemFacets:
    """Facets for every item of `dataset` (titles, categories, brand, year)."""
    titles = [str(t) for t in dataset.titles]
    keys = [franchise_key(t) for t in titles]
    key_counts = Counter(k for k in keys if len(k) >= 3)
    display: dict[str, str] = {}
    for title, key in zip(titles, keys, strict=True):
        if key_counts.get(key, 0) >= min_franchise_items and key not in display:
            display[key] = _SEQUEL.sub("", _SUFFIX.sub("", title.split(":", 1)[0])).strip()
    cats = dataset.items["categories"].tolist()
    brands = dataset.items["brand"].tolist()
    years = dataset.items["year"].tolist()
    facets: list[tuple[tuple[str, str], ...]] = []
    for i, title in enumerate(titles):
        out: list[tuple[str, str]] = []
        out += [("platform", p) for p in _first("platform", title)]
        if keys[i] in display:
            out.append(("franchise", display[keys[i]]))
        out += [("genre", g) for g in _first("genre", title)]
        out += [("kind", k) for k in _first("kind", title)]
        out += [("category", str(c)) for c in (cats[i] or []) if str(c).strip()]
        brand = brands[i]
        if isinstance(brand, str) and brand.strip():
            out.append(("brand", brand.strip()))
        elif not any(kind == "platform" for kind, _ in out):  # "Nintendo" in "Nintendo DS" is no brand cue
            out += [("brand", b) for pat, b in _BRANDS if pat.search(title)][:1]
        year = years[i]
        if year is not None and not (isinstance(year, float) and math.isnan(year)) and str(year) != "<NA>":
            out.append(("decade", f"{int(year) // 10 * 10}s"))
        facets.append(tuple(dict.fromkeys(out)))
    df = Counter(f for item in facets for f in item)
    n = max(len(titles), 1)
    idf = {f: math.log((1 + n) / (1 + c)) + 1.0 for f, c in df.items()}
    return ItemFacets(facets, idf)


def salient_facets(item_facets: ItemFacets, history: np.ndarray | list[int], top: int = 4,
                   min_count: int = 2) -> list[tuple[str, str]]:
    """TF-IDF-ranked facets of a history: recurring ones (count >= min_count) first.

    Score = count in history x idf; ties broken by first appearance so the result is deterministic.
    When nothing recurs (short histories) the best single-occurrence facets are used.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for item in history:
        counts.update(item_facets.facets[int(item)])
    if not counts:
        return []
    idf = item_facets.idf
    ranked = sorted(counts, key=lambda f: (-(counts[f] >= min_count), -counts[f] * idf.get(f, 1.0)))
    recurring = [f for f in ranked if counts[f] >= min_count]
    return ranked[:top] if len(recurring) < 2 else recurring[:top]
