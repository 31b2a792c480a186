"""`Recommender`: retrieve candidates with a classical recommender, rerank them with the tuned LLM.

    rec = Recommender.load("runs/quickstart/recommender")
    result = rec.recommend(user_id="196", request="I want a light comedy for tonight", k=5)
    for item in result.items: print(item.title, item.score)

Per request: the user's history (their sequence, or given item ids/titles) and the request text
are routed to aspects (`routing.route_request`); the first stage fills a candidate pool (the
sequential retriever from the history, the text retriever from the request, merged); the LLM
scores every candidate title given the rendered instruction; where a fusion weight was fitted on
validation users the final score mixes the LLM's and the retriever's standardised scores.

Saved as one folder: `settings.json`, `data/` (the dataset: item table and histories),
`retriever/` and `text_retriever/` (fitted first stages), `model/` (LoRA adapter or full model;
or a reference such as `default` for an untuned model), `templates/` (extra template files).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from instructrec.atomic import atomic_folder
from instructrec.candidates.base import Retriever, load_retriever, top_k
from instructrec.data.dataset import Dataset
from instructrec.errors import DataError, InstructRecError
from instructrec.instructions.facets import compute_facets
from instructrec.instructions.render import Renderer
from instructrec.instructions.schema import Intention
from instructrec.instructions.templates import load_templates
from instructrec.model.backend import LoadedModel, load_model
from instructrec.model.listwise import make_scorer
from instructrec.model.scoring import Normalize, PrefixCache
from instructrec.recommender.constraints import Catalogue, Constraints, refine
from instructrec.recommender.conversation import Turn, conversation_text, referenced_rank
from instructrec.recommender.explain import Explainer
from instructrec.recommender.reranker import FusionWeight, LLMScores, Query, Reranker, RerankSettings
from instructrec.recommender.results import RecommendedItem, RecommendResult
from instructrec.recommender.routing import RoutedRequest, attribute_vocabulary, route_request

SETTINGS_FILE = "settings.json"
FORMAT_VERSION = 2
"""Version 2: fusion weights per aspects key (`fusion`) instead of one `fusion_weight`."""
_VOCAB_FACETS = ("platform", "genre", "kind", "category", "brand")


@dataclass
class RecommenderSettings:
    """How the recommender retrieves and reranks."""

    n_candidates: int = 20
    """First-stage pool size the LLM reranks."""
    request_share: float = 0.5
    """Share of the pool filled from what the request retrieves (the text retriever) when there is
    a request; the rest comes from what the history retrieves (the sequential retriever). Slots one
    side cannot fill go to the other. 0.5 from a sweep on validation-style users of the Amazon
    sample (benchmarks/RESULTS.md, request following): the request's share of the pool raises its
    category precision (0.72 at 0 to 0.83 at 1) but from 0.75 on the pool loses the user's own next
    item (personal pool HR 0.3 at 0-0.5, 0.2 at 0.75, 0.1 at 1)."""
    constraints: bool = True
    """Keep only items that satisfy the attributes a request names (`recommender.constraints`);
    False ranks by the first stage and the LLM alone (e.g. to measure what the LLM follows)."""
    fusion: dict[str, FusionWeight] = field(default_factory=dict)
    """Per aspects key (e.g. `P1,I0,T3`), fitted on validation users of that task: the LLM weight
    of the z-score mix, or a learned stacker's weights (a list: the LLM's, the history retriever's,
    the text retriever's, in that order); a request routed to aspects without one is ranked by the
    LLM alone."""
    normalize: Normalize = "mean"
    """Title log-likelihood: `mean` (length-normalised) or `sum`."""
    history_items: int = 20
    """Most recent history items shown to the LLM (the paper's 20)."""
    model: str = "model"
    """The model: `model` (the folder's own model/ subfolder) or a spec such as `default`."""
    template_files: list[str] = field(default_factory=list)
    """Extra template files (names inside templates/) used besides the built-in library."""
    notes: bool = False
    """Write the history retriever's rank of each candidate into the instruction (for a model tuned
    with candidate notes, `instructions.notes`)."""
    order: bool = False
    """List the candidates in the history retriever's order, its favourite first (for a model tuned
    with `candidate_order`)."""
    prior: bool = False
    """Add the history retriever's z-scored scores, times the model's `prior_weight`, to the LLM's
    (for a model tuned with `candidate_prior`, whose scores are a residual over them)."""
    version: int = FORMAT_VERSION


@dataclass(frozen=True)
class _Prepared:
    """One recommend call routed and given its candidate pool, waiting for the LLM."""

    query: Query
    routed: RoutedRequest
    pool: list[int]
    k: int
    notes: list[str]
    text: str | None = None
    """The request read with the conversation's earlier turns."""
    constraints: Constraints = field(default_factory=Constraints)
    applied: list[str] = field(default_factory=list)
    """The constraints kept, as the answer names them."""
    from_request: frozenset[int] = frozenset()
    """Pool items the request retrieved (for the reasons)."""


class Recommender:
    """Retrieve with classical recommenders, rerank with an instruction-following LLM."""

    def __init__(self, dataset: Dataset, model: LoadedModel, retriever: Retriever,
                 text_retriever: Retriever | None = None, settings: RecommenderSettings | None = None,
                 template_paths: Sequence[Path] = ()) -> None:
        self.dataset = dataset
        self.model = model
        self.retriever = retriever
        self.text_retriever = text_retriever
        self.settings = settings or RecommenderSettings()
        self.template_paths = [Path(p) for p in template_paths]
        self.renderer = Renderer(dataset, load_templates(*self.template_paths))
        self.scorer = make_scorer(model)  # the head the model was trained with
        retrievers = [(retriever, "history")] + ([(text_retriever, "text")] if text_retriever is not None else [])
        if self.settings.notes:
            retrievers.append((retriever, "note"))
        if self.settings.order:
            retrievers.append((retriever, "order"))
        if self.settings.prior:
            retrievers.append((retriever, "prior"))
        self.reranker = Reranker(dataset, LLMScores(self.scorer, self.settings.normalize, memo_size=1024),
                                 retrievers, self.renderer,  # type: ignore[arg-type]
                                 RerankSettings(self.settings.history_items, dict(self.settings.fusion)))
        signals = self.reranker.signal_names
        for key, weight in self.settings.fusion.items():
            if isinstance(weight, list) and len(weight) != len(signals):
                raise InstructRecError(f"the fusion weights for {key} are a stacker of {len(weight)} signals, but this "
                                       f"recommender stacks {len(signals)} ({', '.join(signals)}); fit them again "
                                       "with a stacker of these signals.")
        facets = compute_facets(dataset)
        names = [v for item in facets.facets for kind, v in item if kind in _VOCAB_FACETS]
        self.vocabulary = attribute_vocabulary([names])
        self._title_index: dict[str, int] = {}
        for i, title in enumerate(dataset.titles):
            self._title_index.setdefault(str(title).casefold(), i)
        self.catalogue = Catalogue(dataset)
        self.explainer = Explainer(dataset, self.catalogue, text_retriever)

    def use_prefix_cache(self, entries: int) -> None:
        """Keep the KV cache of the last `entries` prompts and reuse their shared first tokens (a
        known user's chat header, task statement and history) in later requests; 0 turns it off.
        For a server: one-shot use gains nothing from it."""
        self.scorer.prefix_cache = PrefixCache(entries) if entries > 0 and self.model.kind == "causal" else None

    # -- lookups -----------------------------------------------------------------------------
    def has_user(self, user_id: str) -> bool:
        return self.dataset.has_user(user_id)

    def resolve_items(self, items: Sequence[str]) -> np.ndarray:
        """Item ids or exact titles (case-insensitive) -> item indices; a clear error otherwise."""
        out = []
        for value in items:
            key = str(value).strip()
            if key in self.dataset._item_pos:
                out.append(self.dataset._item_pos[key])
            elif key.casefold() in self._title_index:
                out.append(self._title_index[key.casefold()])
            else:
                raise DataError(f"unknown item {key!r}: give item ids or exact titles "
                                "(search titles with /v1/items?q= or `search_items`).")
        return np.asarray(out, dtype=np.int64)

    def search_items(self, query: str, limit: int = 20) -> list[tuple[str, str]]:
        """Titles containing every word of `query` (case-insensitive), shortest title first."""
        words = [w for w in query.casefold().split() if w]
        if not words:
            return []
        titles = self.dataset.titles
        hits = [i for i, t in enumerate(titles) if all(w in str(t).casefold() for w in words)]
        hits.sort(key=lambda i: (len(str(titles[i])), i))
        return [(str(self.dataset.item_ids[i]), str(titles[i])) for i in hits[:limit]]

    # -- recommending ------------------------------------------------------------------------
    def query(self, *, user_id: str | None = None, history: Sequence[str] | None = None,
              request: str | None = None) -> tuple[Query, RoutedRequest]:
        """Route what the user gave to a reranker query (history from the user id or the items given)."""
        if user_id is not None and history:
            raise InstructRecError("give a user id or a history, not both.")
        if user_id is not None:
            user = self.dataset.user_index(user_id)
            hist = self.dataset.sequences[user]
        else:
            user, hist = -1, self.resolve_items(history or [])
        routed = route_request(request, has_history=len(hist) > 0, vocabulary=self.vocabulary)
        return Query(hist, routed.aspects, routed.intention_text, routed.preference_text, user), routed

    def recommend(self, *, user_id: str | None = None, history: Sequence[str] | None = None,
                  request: str | None = None, k: int = 10, candidates: Sequence[str] | None = None,
                  exclude_seen: bool = True, conversation: Sequence[Turn] = ()) -> RecommendResult:
        """Rank items for a user (id or history) and an optional free-text request.

        `conversation`: earlier turns, oldest first (the client sends them back; nothing is kept
        here): their constraints hold unless the new request overrides them, their texts are read
        with the new one, and "more like #N" points into the last turn's items.
        """
        result = self.recommend_many([{"user_id": user_id, "history": history, "request": request, "k": k,
                                       "candidates": candidates, "exclude_seen": exclude_seen,
                                       "conversation": conversation}])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def recommend_many(self, calls: Sequence[Mapping[str, Any]]) -> list[RecommendResult | Exception]:
        """`recommend(**call)` for each call, the LLM scoring several users per forward pass (the
        server's batching); each call's bad input comes back as its own exception, in its place."""
        out: list[RecommendResult | Exception | None] = [None] * len(calls)
        prepared: dict[int, _Prepared] = {}
        for i, call in enumerate(calls):
            try:
                prep = self._prepare(**call)
            except Exception as exc:  # one caller's bad input must not fail the others
                out[i] = exc
                continue
            if isinstance(prep, RecommendResult):  # answered before the LLM (nothing matches)
                out[i] = prep
            else:
                prepared[i] = prep
        by_size: dict[int, list[int]] = {}  # score_batch takes a (users, C) array: group by pool size
        for i, prep in prepared.items():
            by_size.setdefault(len(prep.pool), []).append(i)
        for group in by_size.values():
            try:
                ranked = self._rank([prepared[i] for i in group])
            except Exception:
                if len(group) == 1:
                    raise
                ranked = []  # a model error in a batch: score each alone, so only its own call fails
                for i in group:
                    try:
                        ranked.extend(self._rank([prepared[i]]))
                    except Exception as exc:
                        ranked.append(exc)
            for i, result in zip(group, ranked, strict=True):
                out[i] = result
        return out  # type: ignore[return-value]

    def _prepare(self, *, user_id: str | None = None, history: Sequence[str] | None = None,
                 request: str | None = None, k: int = 10, candidates: Sequence[str] | None = None,
                 exclude_seen: bool = True, conversation: Sequence[Turn] = ()) -> _Prepared | RecommendResult:
        """One call up to the LLM: routed query, constraints, candidate pool, notes (or the
        finished answer when nothing in the catalogue matches)."""
        if k < 1:
            raise InstructRecError("k must be at least 1.")
        notes: list[str] = []
        request = (request or "").strip() or None
        turns = list(conversation)
        text = conversation_text(turns, request)
        constraints = self.constraints(turns, request) if self.settings.constraints else Constraints()
        query, routed = self.query(user_id=user_id, history=history, request=text)
        if constraints and routed.aspects.intention is Intention.VAGUE:
            # The request names catalogue attributes by everyday words ("scary"): a specific intention.
            routed = replace(routed, aspects=replace(routed.aspects, intention=Intention.SPECIFIC),
                             kind="specific_intention", matched_attributes=tuple(constraints.include))
            query = replace(query, aspects=routed.aspects)
        hist = query.history
        anchor = self._anchor(turns, request)
        seen = set(hist.tolist()) if exclude_seen else set()
        if anchor is not None:
            seen.add(anchor)
            notes.append(f"more like {self.dataset.title(anchor)!r} (from the last answer)")
        applied = constraints.describe()
        notes += [f"ignored {what}" for what in constraints.ignored]
        allowed = self.catalogue.mask(constraints) if constraints else None
        if allowed is not None and self.catalogue.all_of_relaxed(constraints):
            notes.append("few items carry all the named categories: any of them is kept")
        if candidates:
            pool = [i for i in dict.fromkeys(self.resolve_items(candidates).tolist()) if i not in seen]
            if not pool:
                raise InstructRecError("every given candidate is already in the user's history; "
                                       "pass exclude_seen=false to rank them anyway.")
            # Given candidates are ranked as given (what the evaluation harness scores, so served
            # and evaluated rankings stay equal); the constraints read are named in a note only.
            if allowed is not None:
                notes.append("constraints read but not applied (the candidates were given): " + "; ".join(applied))
                applied, allowed = [], None
            from_request: set[int] = set()
        else:
            pool, from_request = self.candidate_pool(hist, query.text, seen, allowed, query.user, anchor)
        if not pool:
            notes.append("nothing in the catalogue matches " + "; ".join(applied)
                         + (" that you have not seen" if seen and allowed is not None and allowed.any() else ""))
            return RecommendResult([], "", query.aspects.key(), "", routed.kind, notes, applied, True)
        if allowed is not None and len(pool) < k:
            notes.append(f"only {len(pool)} items match " + "; ".join(applied))
        if not query.readable:
            notes.append("cold start: no history and no request, ranked by the first stage alone")
        elif len(hist) > (shown := self.reranker.settings.history_items):  # a tuned model's own budget wins
            notes.append(f"history cut to the {shown} most recent of {len(hist)} items")
        key = query.aspects.key()
        if query.readable and self.settings.fusion and key not in self.settings.fusion:
            notes.append(f"no fusion weight was fitted for {key}: ranked by the LLM score alone")
        return _Prepared(query, routed, pool, k, notes, text, constraints, applied, frozenset(from_request))

    def _rank(self, batch: Sequence[_Prepared]) -> list[RecommendResult]:
        """Prepared calls with pools of one size, scored in one `Reranker.score_batch` call."""
        lists = self.reranker.score_batch([p.query for p in batch], np.asarray([p.pool for p in batch]))
        instructions = self.reranker.last_instructions
        results = []
        for prep, scored, instruction in zip(batch, lists, instructions, strict=True):
            ranked = scored.ranked(prep.k)
            template_id = self.renderer.template_for(prep.query.aspects).id if instruction else ""
            llm, ret = ranked.columns["llm"], ranked.columns["retrieval"]
            hist = prep.query.history
            items = [RecommendedItem(str(self.dataset.item_ids[item]), ranked.titles[j], float(ranked.scores[j]),
                                     None if np.isnan(llm[j]) else float(llm[j]), float(ret[j]),
                                     self.explainer.reason(int(item), prep.text, prep.constraints, hist,
                                                           int(item) in prep.from_request))
                     for j, item in enumerate(ranked.items)]
            notes = list(prep.notes)
            if instruction and self.scorer.would_truncate(instruction):
                notes.append("instruction cut to the model's context (oldest history dropped)")
            results.append(RecommendResult(items, instruction, prep.query.aspects.key(), template_id,
                                           prep.routed.kind, notes, prep.applied,
                                           pool={"size": len(prep.pool), "from_request": len(prep.from_request)}))
        return results

    def constraints(self, turns: Sequence[Turn], request: str | None) -> Constraints:
        """The constraints of a conversation: each turn's, refined by the later ones; relative words
        ("older", "cheaper") are read against the answer of the turn before."""
        parsed = []
        previous: np.ndarray = np.zeros(0, dtype=np.int64)
        for turn in [*turns, Turn(request or "")]:
            parsed.append(self.catalogue.parse(turn.request, previous))
            previous = self._known(turn.items)
        return refine(*parsed) if parsed else Constraints()

    def _known(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([self.dataset._item_pos[i] for i in item_ids if i in self.dataset._item_pos], dtype=np.int64)

    def _anchor(self, turns: Sequence[Turn], request: str | None) -> int | None:
        rank = referenced_rank(request or "")
        if rank is None:
            return None
        shown = list(turns[-1].items) if turns else []
        if not shown or not (1 <= rank <= len(shown) or rank == -1):
            raise InstructRecError(f"the request points at item #{rank} of the last answer, but the conversation's "
                                   f"last turn shows {len(shown)} items; send that turn's `items`.")
        known = self._known([shown[rank - 1 if rank > 0 else -1]])
        if not len(known):
            raise InstructRecError(f"item {shown[rank - 1 if rank > 0 else -1]!r} of the last answer is not in "
                                   "the catalogue.")
        return int(known[0])

    def candidate_pool(self, hist: np.ndarray, text: str | None, seen: set[int], allowed: np.ndarray | None = None,
                       user: int = -1, anchor: int | None = None) -> tuple[list[int], set[int]]:
        """The first-stage pool (`n_candidates` items) and which of them the request retrieved.

        Rule (`request_share`): with a request, the text retriever's best allowed unseen items take
        `round(request_share * n)` slots and the history retriever's the rest; when one side runs
        out, the other fills up. "More like #N" (`anchor`) reads the anchor item's text and history.
        """
        n = self.settings.n_candidates
        blocked = np.zeros(self.dataset.n_items, dtype=bool)
        blocked[list(seen)] = True
        if allowed is not None:
            blocked |= ~allowed
        by_text: list[int] = []
        if anchor is not None:
            hist = np.append(hist, anchor)
            text = " ".join(filter(None, [text, self.explainer_text(anchor)]))
        if text and self.text_retriever is not None:
            scores = np.asarray(self.text_retriever.score([hist], None, [text], np.array([user]))[0], np.float64)
            by_text = top_k(np.where(blocked, -np.inf, scores), n).items.tolist()
        hist_scores = np.asarray(self.retriever.score([hist], None, None, np.array([user]))[0], np.float64)
        by_hist = top_k(np.where(blocked, -np.inf, hist_scores), n).items.tolist()
        share = self.settings.request_share if by_text else 0.0
        n_text = min(len(by_text), round(share * n))
        mine = by_text[:n_text]
        theirs = [i for i in by_hist if i not in set(mine)][: n - n_text]
        rest = [i for i in by_text[n_text:] + by_hist if i not in set(mine) | set(theirs)]
        # the best of each side first (the order the LLM reads them in), then whatever is left
        pool = [i for pair in zip_longest(mine, theirs) for i in pair if i is not None]
        pool = list(dict.fromkeys(pool + rest))[:n]
        return pool, set(pool) & set(by_text)

    def explainer_text(self, item: int) -> str:
        """An item's title and categories, as a text query ("more like this")."""
        cats = ", ".join(sorted(self.catalogue.categories[item]))
        return f"{self.dataset.title(item)}. {cats}".strip(". ")

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, model_source: str | Path | None = None) -> Path:
        """Write the recommender folder atomically.

        `model_source`: the folder the model was loaded from (a LoRA adapter or a full model),
        copied into model/; None keeps `settings.model` as a reference (e.g. `default`).
        """
        path = Path(path)
        if model_source is not None and not Path(model_source).is_dir():
            raise InstructRecError(
                f"model_source {str(model_source)!r} is not a model folder; give the folder the model was loaded "
                f"from, or None to keep settings.model ({self.settings.model!r}) as a reference (e.g. default).")
        with atomic_folder(path) as tmp:
            settings = RecommenderSettings(**asdict(self.settings))
            self.dataset.save(tmp / "data")
            self.retriever.save(tmp / "retriever")
            if self.text_retriever is not None:
                self.text_retriever.save(tmp / "text_retriever")
            if model_source is not None:
                shutil.copytree(model_source, tmp / "model",
                                ignore=shutil.ignore_patterns("checkpoint-*", "optimizer.pt", "*.bin"))
                settings.model = "model"
            (tmp / "templates").mkdir()
            settings.template_files = []
            for p in self.template_paths:
                shutil.copy2(p, tmp / "templates" / p.name)
                settings.template_files.append(p.name)
            (tmp / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Recommender:
        settings = read_settings(path)
        path = Path(path)
        dataset = Dataset.load(path / "data")
        retriever = load_retriever(path / "retriever")
        text = load_retriever(path / "text_retriever") if (path / "text_retriever").exists() else None
        model_spec = str(path / "model") if settings.model == "model" else settings.model
        # inference only: the adapter merged, and a Llama without importing transformers (fast start)
        model = load_model(model_spec, device=device, merge_adapter=True, lean=True)
        templates = [path / "templates" / name for name in settings.template_files]
        return cls(dataset, model, retriever, text, settings, templates)


def read_settings(path: str | Path) -> RecommenderSettings:
    """A saved recommender's settings; its format version is checked before anything else is read."""
    path = Path(path)
    if not (path / SETTINGS_FILE).is_file():
        raise InstructRecError(f"{path} is not a saved recommender (no {SETTINGS_FILE}); create one with "
                               "`instructrec quickstart` or `instructrec run RECIPE`.")
    try:
        raw = json.loads((path / SETTINGS_FILE).read_text())
        version = int(raw.get("version", 0))
    except (ValueError, TypeError, AttributeError):
        raise InstructRecError(f"{path / SETTINGS_FILE} is damaged (not a JSON object with a version); "
                               "save the recommender again.") from None
    if version > FORMAT_VERSION:
        raise InstructRecError(f"{path} is a recommender of format {version}, written by a newer instructrec "
                               f"(this one reads format {FORMAT_VERSION}); upgrade instructrec to load it.")
    if version < FORMAT_VERSION:
        raise InstructRecError(f"{path} is a recommender of format {version}; this instructrec reads format "
                               f"{FORMAT_VERSION} (fusion weights per task). Build it again with the command "
                               "that made it (`instructrec quickstart --out ...` or `instructrec run RECIPE`): "
                               "finished stages are reused, only the recommender folder is rewritten.")
    known = {f.name for f in fields(RecommenderSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InstructRecError(f"{path / SETTINGS_FILE} has unknown settings {unknown}; it was not written by "
                               "this version of instructrec.")
    return RecommenderSettings(**raw)
