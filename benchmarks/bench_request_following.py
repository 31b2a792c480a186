"""Request following: do the answers give what a request asks for, without costing the user's taste?

Per dataset (MovieLens-100K with genres as ground truth; the Amazon Reviews 2023 sample with its
categories), natural requests per genre/category in three phrasings (`direct` names the genre,
`everyday` uses a plain word for it, `indirect` describes a situation), each asked by a few
seeded users, k = 10. For each method:

* `precision_at_10`: share of the top 10 that carry the requested genre (missing slots count as
  misses), averaged over requests x users;
* `base_rate`: the same for the same users without the request (the method's answer from the
  history alone);
* `psearch_hr1`: HR@1 on the psearch-i2 task <P1,I2,T3> (1 true + 9 random candidates, seeded
  test users) through the evaluation harness (`eval.runner.run_evaluation`), so that following a
  request is checked not to cost the user's own taste.

Methods: popularity, sasrec (history only), bm25 (title, brand, categories), dense and hybrid (the
request over the whole item text; `candidates.hybrid`), and `recommender`: a full saved
`Recommender` (SASRec from the history + hybrid from the request, named constraints kept, the
tuned LLM reranking; fusion weights fitted on validation users through the harness), saved and
loaded back before it is measured. The recommender's pool rule (`request_share`) can be swept
(`--shares`); its mean share of request-retrieved pool items is reported.

The LLM is not retrained: `--ml-recommender` (default: the quickstart's saved recommender) gives
the MovieLens data, SASRec and tuned adapter; `--a23-model` the adapter for the Amazon sample.

Usage (from the repository root):
  nice -n 15 .venv/bin/python benchmarks/bench_request_following.py \\
      --ml-recommender runs/quickstart/recommender --a23-model runs/games-table6/models/tuned-XXXX
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from instructrec.candidates.base import Retriever, load_retriever
from instructrec.data.dataset import Dataset
from instructrec.data.split import leave_one_out
from instructrec.eval.methods import parse_method
from instructrec.eval.protocol import get_task
from instructrec.eval.queries import query_provider
from instructrec.eval.runner import (
    RetrieverStore,
    RunSettings,
    fit_method_fusion,
    make_context,
    run_evaluation,
    validation_candidates,
)
from instructrec.instructions.schema import Aspects
from instructrec.model.backend import load_model
from instructrec.recommender import Recommender, RecommenderSettings
from instructrec.recommender.reranker import COLLABORATIVE_ROLE

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_request_following")

# (genre as the catalogue spells it, direct, everyday, indirect)
MOVIELENS_REQUESTS = [
    ("Action", "an action movie", "something with lots of explosions and fight scenes", "I need an adrenaline rush tonight"),
    ("Adventure", "an adventure film", "a treasure hunt or an expedition story",
     "something that takes me on a grand journey to far-off lands"),
    ("Animation", "an animated film", "a cartoon", "something hand-drawn like the Disney classics"),
    ("Children's", "a children's movie", "something to watch with my kids", "a film my six-year-old would enjoy"),
    ("Comedy", "a comedy", "something funny", "I want to laugh until I cry"),
    ("Crime", "a crime film", "a gangster movie", "a story about a bank robbery gone wrong"),
    ("Documentary", "a documentary", "a non-fiction film about real events",
     "I want to learn something true about the world"),
    ("Drama", "a drama", "an emotional tearjerker", "a serious, character-driven story"),
    ("Fantasy", "a fantasy film", "something with magic and wizards", "a tale of elves and enchanted kingdoms"),
    ("Film-Noir", "a film noir", "a hard-boiled black-and-white detective story",
     "shadowy 1940s crime with a femme fatale"),
    ("Horror", "a horror movie", "a scary movie for halloween night", "something that will give me nightmares"),
    ("Musical", "a musical", "a movie full of singing and dancing", "a Broadway show turned into a film"),
    ("Mystery", "a mystery", "a whodunit", "a puzzle of a plot where I guess the culprit"),
    ("Romance", "a romance", "a romantic movie for date night", "a love story"),
    ("Sci-Fi", "a sci-fi film", "a science fiction movie about aliens", "something set on a spaceship in the far future"),
    ("Thriller", "a thriller", "something suspenseful", "a film that keeps me on the edge of my seat"),
    ("War", "a war movie", "a film about soldiers in world war ii", "a story of the battlefield and the men who fought"),
    ("Western", "a western", "a cowboy movie", "gunfights in the wild west"),
]
AMAZON_REQUESTS = [
    ("Pet Supplies", "pet supplies", "something for my dog", "my new kitten needs a few things"),
    ("Automotive", "automotive parts", "something for my car", "accessories to keep my truck clean"),
    ("Toys & Games", "toys and games", "a toy for my nephew", "a fun birthday present for a five-year-old"),
    ("Cell Phones & Accessories", "cell phone accessories", "a case for my phone", "my charger broke, I need a new one"),
    ("Musical Instruments", "musical instruments", "guitar strings", "gear for my band practice"),
    ("Grocery", "groceries", "snacks for the office", "a good coffee to start my morning"),
    ("Office Products", "office products", "pens and notebooks", "supplies to organise my desk at work"),
    ("Video Games", "a video game", "something to play on my playstation", "a new game for game night with friends"),
    ("Movies & TV", "movies and tv", "a tv series to binge", "something to watch tonight"),
    ("Sports & Outdoors", "sports and outdoors gear", "camping equipment", "gear for my morning run"),
    ("Arts, Crafts & Sewing", "arts and crafts supplies", "yarn for knitting", "supplies for a scrapbooking project"),
    ("All Beauty", "beauty products", "makeup", "something to pamper my skin"),
]
# Named constraints the Amazon catalogue needs (platform, price, brand, "not X"), each with a check
# written apart from the recommender's parser (on the raw title and price), so a request the parser
# misreads counts as not honoured. (request, category or None, check name, check)
_T = lambda pattern: (lambda d, i: re.search(pattern, str(d.titles[i]), re.IGNORECASE) is not None)  # noqa: E731
_NOT = lambda pattern: (lambda d, i: re.search(pattern, str(d.titles[i]), re.IGNORECASE) is None)  # noqa: E731


def _price(lo: float = 0.0, hi: float = float("inf")) -> Any:
    def check(d: Dataset, i: int) -> bool:
        price = d.items["price"].iloc[i]
        return price is not None and not pd.isna(price) and lo <= float(price) <= hi
    return check


def _both(*checks: Any) -> Any:
    return lambda d, i: all(c(d, i) for c in checks)


AMAZON_CONSTRAINT_REQUESTS = [
    ("a video game for PS4", "Video Games", "title names the PS4", _T(r"ps4|playstation\s*4")),
    ("something to play on my Nintendo Switch", "Video Games", "title names the Switch or its Joy-Con",
     _T(r"switch|joy-?cons?\b")),  # "Nintendo Joy-Con (L/R)": Switch controllers, the title omits "Switch"
    ("an Xbox One controller", None, "title names the Xbox One", _T(r"xbox\s*one")),
    ("a game for the Wii U", None, "title names the Wii U", _T(r"wii\s*u\b")),
    ("a PS Vita game", None, "title names the PS Vita", _T(r"(?:ps|playstation)\s*vita")),  # "vita" alone: vitamins
    ("a phone case for my iPhone", "Cell Phones & Accessories", "title names the iPhone", _T(r"iphone")),
    ("guitar strings under $10", "Musical Instruments", "price <= $10", _price(hi=10)),
    ("a good coffee under $20", "Grocery", "price <= $20", _price(hi=20)),
    ("pet supplies over $30", "Pet Supplies", "price >= $30", _price(lo=30)),
    ("an iPhone charger under $15", None, "iPhone and price <= $15", _both(_T(r"iphone"), _price(hi=15))),
    ("a PS4 game under $1", None, "PS4 and price <= $1", _both(_T(r"ps4|playstation\s*4"), _price(hi=1))),
    ("a gaming mouse from Logitech", None, "title names Logitech", _T(r"logitech")),
    ("guitar accessories made by Fender", None, "title names Fender", _T(r"fender")),
    ("a Samsung phone case", None, "title names Samsung", _T(r"samsung")),
    ("a phone case, but not pink", "Cell Phones & Accessories", "title does not say pink", _NOT(r"\bpink\b")),
    ("headphones, nothing wireless", None, "title does not say wireless", _NOT(r"\bwireless\b")),
    ("a video game, not for Xbox", "Video Games", "title does not name the Xbox", _NOT(r"xbox")),
    ("something for my dog, no squeaky toys", "Pet Supplies", "title does not say squeaky", _NOT(r"\bsqueaky\b")),
]
PHRASINGS = ("direct", "everyday", "indirect")
RETRIEVERS = ("popularity", "sasrec", "bm25", "dense", "hybrid")


@dataclass
class Request:
    genre: str
    text: str
    phrasing: str


def requests_of(table: list[tuple[str, str, str, str]]) -> list[Request]:
    return [Request(genre, text, kind) for genre, *texts in table for text, kind in zip(texts, PHRASINGS, strict=True)]


def _precision(items: list[int], genre: str, dataset: Dataset, k: int) -> float:
    cats = dataset.items["categories"]
    return sum(genre in set(cats.iloc[i]) for i in items[:k]) / k


def _retriever_top(model: Retriever, hist: np.ndarray, text: str | None, k: int, user: int) -> list[int]:
    if text is not None and model.uses_query:
        scores = np.asarray(model.score([hist], None, [text], np.array([user]))[0], dtype=np.float64)
    else:
        scores = np.asarray(model.score([hist], None, None, np.array([user]))[0], dtype=np.float64)
    scores[hist] = -np.inf
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k] if np.isfinite(scores[i])]


def seeded_users(dataset: Dataset, n: int, seed: int) -> list[int]:
    eligible = [u for u, seq in enumerate(dataset.sequences) if len(seq) >= 3]
    return sorted(np.random.default_rng(seed).choice(eligible, size=min(n, len(eligible)), replace=False).tolist())


def follow_requests(dataset: Dataset, requests: list[Request], users: list[int], method: str, k: int,
                    retriever: Retriever | None = None, rec: Recommender | None = None) -> dict[str, Any]:
    """Precision@k with and without the request for one method; for the recommender also the pool
    mix, the share of answers that honour their constraints, and "nothing matches" answers."""
    with_req, base, kinds = [], {}, {p: [] for p in PHRASINGS}
    pool_share, honoured, answered_empty, lexicon_hit = [], [], 0, []
    for u in users:
        hist = dataset.sequences[u]
        user_id = str(dataset.user_ids[u])
        for req in requests:
            if rec is not None:
                result = rec.recommend(user_id=user_id, request=req.text, k=k)
                top = [dataset._item_pos[it.item_id] for it in result.items]
                if result.pool.get("size"):
                    pool_share.append(result.pool["from_request"] / result.pool["size"])
                answered_empty += result.nothing_matches
                lexicon_hit.append(bool(result.constraints))
                if result.constraints and top:
                    c = rec.constraints([], req.text)
                    honoured.append(bool(rec.catalogue.mask(c)[top].all()))
            else:
                assert retriever is not None
                top = _retriever_top(retriever, hist, req.text, k, u)
            p = _precision(top, req.genre, dataset, k)
            with_req.append(p)
            kinds[req.phrasing].append(p)
        # the base rate: the same method for this user without a request, scored for every genre asked
        if rec is not None:
            top = [dataset._item_pos[it.item_id] for it in rec.recommend(user_id=user_id, k=k).items]
        else:
            top = _retriever_top(retriever, hist, None, k, u)  # type: ignore[arg-type]
        base[u] = [_precision(top, req.genre, dataset, k) for req in requests]
    out: dict[str, Any] = {
        "precision_at_10": round(float(np.mean(with_req)), 4),
        "precision_ci95": round(float(1.96 * np.std(with_req) / np.sqrt(len(with_req))), 4),
        "base_rate": round(float(np.mean([p for v in base.values() for p in v])), 4),
        "by_phrasing": {p: round(float(np.mean(v)), 4) for p, v in kinds.items()},
    }
    if rec is not None:
        out.update({"pool_request_share": round(float(np.mean(pool_share)), 4) if pool_share else None,
                    "constraints_read": round(float(np.mean(lexicon_hit)), 4),
                    "constraints_honoured": round(float(np.mean(honoured)), 4) if honoured else None,
                    "nothing_matches_answers": int(answered_empty)})
        hits = [p for p, h in zip(with_req, lexicon_hit, strict=True) if h]
        misses = [p for p, h in zip(with_req, lexicon_hit, strict=True) if not h]
        out["precision_when_constraints_read"] = round(float(np.mean(hits)), 4) if hits else None
        out["precision_when_none_read"] = round(float(np.mean(misses)), 4) if misses else None
    return out


def follow_constraints(dataset: Dataset, cases: list[tuple[str, str | None, str, Any]], users: list[int], k: int,
                       retriever: Retriever | None = None, rec: Recommender | None = None) -> dict[str, Any]:
    """Named constraints kept: per (request, user), whether every answered item passes the request's
    own check, over the answers the catalogue can satisfy (some unseen item passes it); where none
    can, whether the answer is an empty "nothing matches" (the recommender) rather than unrelated items."""
    honoured, per_case, nothing_ok, nothing_total = [], [], 0, 0
    for text, _category, what, check in cases:
        passing = np.asarray([check(dataset, i) for i in range(dataset.n_items)])
        kept = []
        for u in users:
            hist = dataset.sequences[u]
            satisfiable = bool(np.delete(passing, hist).any())
            if rec is not None:
                result = rec.recommend(user_id=str(dataset.user_ids[u]), request=text, k=k)
                top = [dataset._item_pos[it.item_id] for it in result.items]
                empty = result.nothing_matches
            else:
                assert retriever is not None
                top = _retriever_top(retriever, hist, text, k, u)
                empty = not top
            if satisfiable:
                ok = bool(top) and bool(passing[top].all())
                honoured.append(ok)
                kept.append(ok)
            else:
                nothing_total += 1
                nothing_ok += bool(empty)
        per_case.append({"request": text, "check": what, "satisfiable_items": int(passing.sum()),
                         "honoured": round(float(np.mean(kept)), 4) if kept else None})
    return {"constraints_honoured": round(float(np.mean(honoured)), 4) if honoured else None,
            "constraint_answers": len(honoured),
            "nothing_matches_when_unsatisfiable": f"{nothing_ok}/{nothing_total}", "constraint_cases": per_case}


def own_next_item(dataset: Dataset, user: int) -> tuple[list[str], int, str] | None:
    """The user's history before their validation item (as item ids), that item, and a request
    naming its first category; None where there is no history or no category."""
    seq = dataset.sequences[user]
    hist, target = seq[:-2], int(seq[-2])
    cats = dataset.items["categories"].iloc[target]
    genre = sorted(str(c) for c in (cats if cats is not None else ()))
    if not len(hist) or not genre:
        return None
    return [str(dataset.item_ids[i]) for i in hist], target, genre[0].lower()


def share_sweep(name: str, dataset: Dataset, requests: list[Request], rec: Recommender, shares: list[float],
                users: list[int], personal_users: list[int], k: int, psearch_hr1: float,
                emit: Any = None) -> list[dict[str, Any]]:
    """The pool rule measured on validation-style users (none of the benchmark's test users):
    per `request_share`, precision@k on the requests, and `personal_hr10`: with the history cut
    before each user's validation item and the request naming that item's category (the catalogue's
    own word for it), whether that item is in the top 10 (what the history side keeps, which a pool
    filled from the request alone would lose). psearch HR@1 ranks given candidates (no pool) and is
    the same for every share: recorded once."""
    out = []
    for share in shares:
        rec.settings.request_share = share
        started = time.monotonic()
        got = follow_requests(dataset, requests, users, "recommender", k, rec=rec)
        hits, pool_share = [], []
        for u in personal_users:
            asked = own_next_item(dataset, u)
            if asked is None:
                continue
            hist, target, genre = asked
            result = rec.recommend(history=hist, request=genre, k=k)
            hits.append(str(dataset.item_ids[target]) in {it.item_id for it in result.items})
            if result.pool.get("size"):
                pool_share.append(result.pool["from_request"] / result.pool["size"])
        out.append({"dataset": name, "stage": "recommender", "request_share": share,
                    "precision_at_10": got["precision_at_10"],
                    "by_phrasing": got["by_phrasing"], "personal_hr10": round(float(np.mean(hits)), 4) if hits else None,
                    "personal_users": len(hits), "pool_request_share": got["pool_request_share"],
                    "psearch_hr1": psearch_hr1, "requests": len(requests), "users": len(users),
                    "seconds": round(time.monotonic() - started, 1)})
        log.info("%s sweep: %s", name, out[-1])
        if emit is not None:
            emit(out)
    return out


def _memo(score: Any) -> Any:
    cache: dict[Any, Any] = {}

    def memo(histories: Any, candidates: Any = None, queries: Any = None, users: Any = None) -> Any:
        if candidates is not None or len(histories) != 1:
            return score(histories, candidates, queries, users)
        key = (tuple(int(i) for i in histories[0]), tuple(queries) if queries is not None else None,
               tuple(int(u) for u in users) if users is not None else None)
        if key not in cache:
            cache[key] = score(histories, candidates, queries, users)
        return cache[key]
    return memo


def constraints_only(args: argparse.Namespace) -> None:
    """`--constraints-only`: what the recommender's filter keeps for each Amazon constraint request,
    checked against the request's own check (no LLM: the recommender answers only from the filter's
    items, so a filter inside the check's items with some item left means every answer honours the
    constraint, and an empty filter means the "nothing matches" answer). Written to `--constraints-out`."""
    from instructrec.data.loaders.amazon2023 import load_sample
    from instructrec.recommender.constraints import Catalogue

    dataset = load_sample(args.a23_data)
    catalogue = Catalogue(dataset)
    out = []
    for text, category, what, check in AMAZON_CONSTRAINT_REQUESTS:
        passing = np.asarray([check(dataset, i) for i in range(dataset.n_items)])
        read = catalogue.parse(text)
        kept = catalogue.mask(read)
        out.append({"request": text, "check": what, "read": read.describe(), "ignored": list(read.ignored),
                    "kept_items": int(kept.sum()), "passing_items": int(passing.sum()),
                    "kept_pass_check": bool(passing[kept].all()),
                    "category_precision_of_kept": round(float(np.mean([category in set(dataset.items["categories"].iloc[i])
                                                                       for i in np.flatnonzero(kept)])), 4)
                    if category and kept.any() else None,
                    "outcome": ("honoured" if kept.any() and passing[kept].all() else
                                "nothing matches (correct)" if not kept.any() and not passing.any() else
                                "nothing matches (wrong: items pass the check)" if not kept.any() else
                                "not honoured")})
        log.info("%s", out[-1])
    args.constraints_out.write_text(json.dumps({"dataset": "amazon2023-sample", "cases": out}, indent=2) + "\n")


def pool_sweep_only(args: argparse.Namespace) -> None:
    """`--pool-sweep-only`: the pool sweep on the Amazon sample's saved bench recommender (from an
    earlier run's --work folder), written to `--sweep-out`."""
    from instructrec.data.loaders.amazon2023 import load_sample

    dataset = load_sample(args.a23_data)
    rec = Recommender.load(args.work / "amazon2023-sample" / "recommender", device="cpu")
    users = seeded_users(dataset, args.users, args.seed)
    pool = [u for u in seeded_users(dataset, args.sweep_users + args.sweep_personal + len(users), args.seed + 1)
            if u not in set(users)]
    got = pool_sweep("amazon2023-sample", dataset, requests_of(AMAZON_REQUESTS), rec, args.sweep_shares,
                     pool[:args.sweep_users], pool[args.sweep_users:args.sweep_users + args.sweep_personal])
    args.sweep_out.write_text(json.dumps({"request_share_sweep": got, "settings": {
        k: str(v) for k, v in vars(args).items()}}, indent=2) + "\n")
    print(json.dumps(got, indent=2))


def pool_sweep(name: str, dataset: Dataset, requests: list[Request], rec: Recommender, shares: list[float],
               users: list[int], personal_users: list[int]) -> list[dict[str, Any]]:
    """The pool rule alone (no LLM call: `Recommender._prepare` stops before the reranker), on the
    same validation-style users as `share_sweep`: per share, the share of pool items carrying the
    requested category (`pool_precision`), and `personal_pool_hr`: whether each user's validation
    item (history cut before it, the request naming its category) is in the pool the LLM reranks."""
    out = []
    cats = dataset.items["categories"]
    # The share only cuts the two retrievers' lists differently: score each (history, request) once.
    for model in {id(r): r for r in (rec.retriever, rec.text_retriever) if r is not None}.values():
        model.score = _memo(model.score)  # type: ignore[method-assign]
    for share in shares:
        rec.settings.request_share = share
        precision, hits = [], []
        for u in users:
            for req in requests:
                prep = rec._prepare(user_id=str(dataset.user_ids[u]), request=req.text, k=10)
                pool = getattr(prep, "pool", [])
                precision.append(float(np.mean([req.genre in set(cats.iloc[i]) for i in pool])) if pool else 0.0)
        for u in personal_users:
            asked = own_next_item(dataset, u)
            if asked is None:
                continue
            hist, target, genre = asked
            prep = rec._prepare(history=hist, request=genre, k=10)
            hits.append(target in set(getattr(prep, "pool", [])))
        out.append({"dataset": name, "stage": "pool", "request_share": share,
                    "pool_precision": round(float(np.mean(precision)), 4),
                    "personal_pool_hr": round(float(np.mean(hits)), 4) if hits else None,
                    "personal_users": len(hits), "requests": len(requests), "users": len(users),
                    "pool_size": rec.settings.n_candidates})
        log.info("%s pool sweep: %s", name, out[-1])
    return out


def first_stage_input(collaborative: tuple[str, ...]) -> str:
    """The method part that gives a model the first-stage input it was tuned with (`+sasrec@order`
    for `collaborative: [order]`, `+sasrec@note` for `[notes]`), as the recommender gives it."""
    return "".join(f"+sasrec@{COLLABORATIVE_ROLE[kind]}" for kind in collaborative)


def fit_weights(dataset: Dataset, split: Any, store: RetrieverStore, model: str, valid_users: int,
                seed: int, collaborative: tuple[str, ...] = ()) -> dict[str, float]:
    """LLM fusion weights of the recommender's signals (SASRec@history + hybrid@text), per task,
    fitted on seeded validation users through the harness."""
    method = parse_method(f"llm:{model}{first_stage_input(collaborative)}+sasrec@history+hybrid@text", "fused")
    ctx = make_context(dataset, split, store, model)
    weights = {}
    for task_name in ("psearch-i2", "psearch-i1", "seqrec"):
        task = get_task(task_name)
        settings = RunSettings([method.text], task_name, "random:9", None, valid_users, seed)
        valid = validation_candidates(settings, dataset, split, store, 10)
        queries = query_provider(task.query, dataset, split, "teacher", seed, "valid")
        weights[Aspects.parse(task.aspects).key()] = fit_method_fusion(method, ctx, task, valid, queries, seed)
        log.info("%s: fusion weight %s", task_name, weights)
    return weights


def psearch(dataset: Dataset, split: Any, store: RetrieverStore, rec: Recommender | None, users: int,
            seed: int, methods: tuple[str, ...] = (*RETRIEVERS, "recommender")) -> dict[str, float]:
    """psearch-i2 HR@1 per method, every method on the same candidates (the harness: the same seed
    and users give the same candidates, so methods measured in separate calls stay comparable)."""
    ctx = make_context(dataset, split, store, None, rec)
    settings = RunSettings(list(methods), "psearch-i2", "random:9", users, 30, seed)
    results, _ = run_evaluation(dataset, split, settings, store, ctx=ctx, progress=False)
    return {r.method: round(float(r.summary["HR@1"]["mean"]), 4) for r in results}


def run_dataset(name: str, dataset: Dataset, requests: list[Request], model: str, sasrec: Retriever | None,
                work: Path, args: argparse.Namespace,
                emit: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per method, then the share sweep; `emit(rows, sweep)` records what is done after each
    stage (the retrievers first: on a loaded CPU the LLM stages may not finish)."""
    started = time.monotonic()
    emit = emit or (lambda rows, sweep: None)
    split = leave_one_out(dataset)
    store = RetrieverStore(dataset, split, work / "retrievers",
                           {"sasrec": {"epochs": 30, "max_minutes": 2.0, "progress": False}})
    if sasrec is not None:
        store.preload("sasrec", sasrec)
    fitted = {m: store(m) for m in RETRIEVERS}
    cache = work / "fusion.json"  # fitting is the slow LLM part; a rerun with the same settings reuses it
    key = f"{model}|{args.valid_users}|{args.seed}"
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    llm = load_model(model, device="cpu")
    weights = cached.get(key) if key in cached else (
        fit_weights(dataset, split, store, model, args.valid_users, args.seed, llm.collaborative)
        if args.valid_users > 0 else {})
    cache.write_text(json.dumps({**cached, key: weights}, indent=2))
    rec_dir = work / "recommender"
    Recommender(dataset, llm, fitted["sasrec"], fitted["hybrid"],
                RecommenderSettings(model=model, n_candidates=20, fusion=weights, request_share=args.shares[0],
                                    order="order" in llm.collaborative, notes="notes" in llm.collaborative)).save(
                    rec_dir, model_source=model if Path(model).is_dir() else None)  # `default`: kept as a reference
    rec = Recommender.load(rec_dir, device="cpu")  # what is measured is the saved recommender
    users = seeded_users(dataset, args.users, args.seed)
    hr1 = psearch(dataset, split, store, None, args.psearch_users, args.seed, RETRIEVERS)
    cases = AMAZON_CONSTRAINT_REQUESTS if name == "amazon2023-sample" else []
    rows: list[dict[str, Any]] = []

    def stamp() -> None:
        for r in rows:
            r["psearch_users"] = args.psearch_users
            r["seconds_dataset"] = round(time.monotonic() - started, 1)

    for method in RETRIEVERS:
        got = follow_requests(dataset, requests, users, method, args.k, retriever=fitted[method])
        if cases:
            got.update(follow_constraints(dataset, cases, users, args.k, retriever=fitted[method]))
        rows.append({"dataset": name, "method": method, **got, "psearch_hr1": hr1[method],
                     "requests": len(requests), "users": len(users)})
        log.info("%s %s: %s", name, method, rows[-1])
    stamp()
    emit(rows, [])
    pools: list[dict[str, Any]] = []
    if args.sweep_shares:
        # validation-style users: seeded apart from, and disjoint with, the test users above
        pool = [u for u in seeded_users(dataset, args.sweep_users + args.sweep_personal + len(users), args.seed + 1)
                if u not in set(users)]
        sweep_users, personal = pool[:args.sweep_users], pool[args.sweep_users:args.sweep_users + args.sweep_personal]
        pools = pool_sweep(name, dataset, requests, rec, args.sweep_shares, sweep_users, personal)
        emit(rows, pools)
    hr1.update(psearch(dataset, split, store, rec, args.psearch_users, args.seed, ("recommender",)))
    for share in args.shares:
        rec.settings.request_share = share
        got = follow_requests(dataset, requests, users, "recommender", args.k, rec=rec)
        if cases:
            got.update(follow_constraints(dataset, cases, users, args.k, rec=rec))
        rows.append({"dataset": name, "method": "recommender" if share == args.shares[0] else
                     f"recommender@share={share}", **got, "psearch_hr1": hr1["recommender"],
                     "requests": len(requests), "users": len(users), "request_share": share,
                     "fusion": weights})
        log.info("%s recommender share %.2f: %s", name, share, rows[-1])
    stamp()
    emit(rows, pools)
    sweep: list[dict[str, Any]] = list(pools)
    if args.sweep_shares:
        sweep += share_sweep(name, dataset, requests, rec, args.sweep_shares, sweep_users, personal, args.k,
                             hr1["recommender"], lambda done: emit(rows, pools + done))
    return rows, sweep


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The RESULTS.md table of the rows (one line per dataset x method)."""
    lines = ["| dataset | method | precision@10 (95% CI) | direct / everyday / indirect | base rate | psearch-i2 HR@1 "
             "| requests x users |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ph = r["by_phrasing"]
        lines.append(f"| {r['dataset']} | {r['method']} | {r['precision_at_10']:.3f} ±{r['precision_ci95']:.3f} | "
                     f"{ph['direct']:.2f} / {ph['everyday']:.2f} / {ph['indirect']:.2f} | {r['base_rate']:.3f} | "
                     f"{r['psearch_hr1']:.3f} ({r['psearch_users']} users) | {r['requests']} x {r['users']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ml-recommender", type=Path, default=ROOT / "runs/quickstart/recommender",
                        help="saved recommender whose data, SASRec and tuned adapter the MovieLens part reuses")
    parser.add_argument("--a23-data", type=Path, default=ROOT / "../shared/data/amazon-reviews-2023-sample")
    parser.add_argument("--a23-model", default="default", help="model/adapter for the Amazon sample recommender")
    parser.add_argument("--datasets", default="movielens-100k,amazon2023-sample")
    parser.add_argument("--users", type=int, default=3, help="seeded users asking every request")
    parser.add_argument("--psearch-users", type=int, default=60)
    parser.add_argument("--valid-users", type=int, default=30,
                        help="validation users for the fusion weights (0: none fitted, the LLM score alone)")
    parser.add_argument("--shares", type=lambda s: [float(x) for x in s.split(",")], default=[0.5],
                        help="request_share values for the recommender (the first is saved as its setting)")
    parser.add_argument("--sweep-shares", type=lambda s: [float(x) for x in s.split(",")], default=[],
                        help="request_share values measured on validation-style users (e.g. 0.25,0.5,0.75,1)")
    parser.add_argument("--sweep-users", type=int, default=2, help="validation-style users asking every request")
    parser.add_argument("--sweep-personal", type=int, default=20,
                        help="validation-style users for the personal HR@10 of the sweep")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "runs/bench-request-following")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/request-following.json")
    parser.add_argument("--pool-sweep-only", action="store_true",
                        help="only the pool sweep (no LLM) on the Amazon sample's saved bench recommender")
    parser.add_argument("--sweep-out", type=Path, default=ROOT / "benchmarks/results/request-share-sweep.json")
    parser.add_argument("--constraints-only", action="store_true",
                        help="only the Amazon constraint requests through the recommender's filter (no LLM)")
    parser.add_argument("--constraints-out", type=Path,
                        default=ROOT / "benchmarks/results/request-following-constraints.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.constraints_only:
        constraints_only(args)
        return
    if args.pool_sweep_only:
        pool_sweep_only(args)
        return
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    names = [d.strip() for d in args.datasets.split(",")]
    old = json.loads(args.out.read_text()) if args.out.exists() else {}

    def write(new_rows: list[dict[str, Any]], new_sweep: list[dict[str, Any]]) -> dict[str, Any]:
        record = {"rows": rows + new_rows, "request_share_sweep": sweep + new_sweep,
                  "settings": {**{k: str(v) for k, v in vars(args).items()}},
                  "seconds": round(time.monotonic() - started, 1),
                  "requests": {"movielens-100k": [r.__dict__ for r in requests_of(MOVIELENS_REQUESTS)],
                               "amazon2023-sample": [r.__dict__ for r in requests_of(AMAZON_REQUESTS)],
                               "amazon2023-sample-constraints": [
                                   {"text": t, "category": c, "check": w} for t, c, w, _ in AMAZON_CONSTRAINT_REQUESTS]}}
        # keep rows of datasets not run this time, and a recorded sweep when none is run
        record["rows"] = [r for r in old.get("rows", []) if r["dataset"] not in names] + record["rows"]
        if not args.sweep_shares:
            record["request_share_sweep"] = old.get("request_share_sweep", [])
        else:
            record["request_share_sweep"] = [r for r in old.get("request_share_sweep", [])
                                             if r["dataset"] not in names] + record["request_share_sweep"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        return record

    if "movielens-100k" in names:
        ml = args.ml_recommender
        got = run_dataset("movielens-100k", Dataset.load(ml / "data"), requests_of(MOVIELENS_REQUESTS),
                          str(ml / "model"), load_retriever(ml / "retriever"), args.work / "movielens-100k", args,
                          write)
        rows, sweep = rows + got[0], sweep + got[1]
    if "amazon2023-sample" in names:
        from instructrec.data.loaders.amazon2023 import load_sample

        got = run_dataset("amazon2023-sample", load_sample(args.a23_data), requests_of(AMAZON_REQUESTS),
                          args.a23_model, None, args.work / "amazon2023-sample", args, write)
        rows, sweep = rows + got[0], sweep + got[1]
    record = write([], [])
    print(markdown_table(record["rows"]))
    print(f"wrote {args.out} ({len(rows)} rows, {record['seconds']} s)")


if __name__ == "__main__":
    main()
