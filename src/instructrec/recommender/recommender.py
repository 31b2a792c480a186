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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from instructrec.atomic import atomic_folder
from instructrec.candidates.base import Retriever, load_retriever
from instructrec.data.dataset import Dataset
from instructrec.errors import DataError, InstructRecError
from instructrec.instructions.facets import compute_facets
from instructrec.instructions.render import Renderer
from instructrec.instructions.schema import Intention, Preference
from instructrec.instructions.templates import load_templates
from instructrec.model.backend import LoadedModel, load_model
from instructrec.model.scoring import CandidateScorer, Normalize
from instructrec.recommender.llm_scorer import standardize
from instructrec.recommender.results import RecommendedItem, RecommendResult
from instructrec.recommender.routing import attribute_vocabulary, fit_to_slot, route_request

SETTINGS_FILE = "settings.json"
FORMAT_VERSION = 1
_VOCAB_FACETS = ("platform", "genre", "kind", "category", "brand")


@dataclass
class RecommenderSettings:
    """How the recommender retrieves and reranks."""

    n_candidates: int = 20
    """First-stage pool size the LLM reranks."""
    fusion_weight: float | None = None
    """LLM weight in the fused score (fitted on validation users); None = LLM score alone."""
    normalize: Normalize = "mean"
    """Title log-likelihood: `mean` (length-normalised) or `sum`."""
    history_items: int = 20
    """Most recent history items shown to the LLM (the paper's 20)."""
    model: str = "model"
    """The model: `model` (the folder's own model/ subfolder) or a spec such as `default`."""
    template_files: list[str] = field(default_factory=list)
    """Extra template files (names inside templates/) used besides the built-in library."""
    version: int = FORMAT_VERSION


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
        self.scorer = CandidateScorer(model)
        facets = compute_facets(dataset)
        names = [v for item in facets.facets for kind, v in item if kind in _VOCAB_FACETS]
        self.vocabulary = attribute_vocabulary([names])
        self._title_index: dict[str, int] = {}
        for i, title in enumerate(dataset.titles):
            self._title_index.setdefault(str(title).casefold(), i)

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
    def recommend(self, *, user_id: str | None = None, history: Sequence[str] | None = None,
                  request: str | None = None, k: int = 10, candidates: Sequence[str] | None = None,
                  exclude_seen: bool = True) -> RecommendResult:
        """Rank items for a user (id or history) and an optional free-text request."""
        if k < 1:
            raise InstructRecError("k must be at least 1.")
        notes: list[str] = []
        if user_id is not None:
            hist = self.dataset.sequences[self.dataset.user_index(user_id)]
        else:
            hist = self.resolve_items(history or [])
        request = (request or "").strip() or None
        routed = route_request(request, has_history=len(hist) > 0, vocabulary=self.vocabulary)
        seen = set(hist.tolist()) if exclude_seen else set()
        if candidates:
            pool = [i for i in dict.fromkeys(self.resolve_items(candidates).tolist()) if i not in seen]
            if not pool:
                raise InstructRecError("every given candidate is already in the user's history; "
                                       "pass exclude_seen=false to rank them anyway.")
        else:
            pool = self._retrieve(hist, routed.intention_text or routed.preference_text, seen)
        if not len(hist) and not request:
            notes.append("cold start: no history and no request, ranked by the first stage alone")
            return self._first_stage_only(hist, pool, k, routed, notes, request)
        shown = hist[-self.settings.history_items:]
        if len(hist) > len(shown):
            notes.append(f"history cut to the {len(shown)} most recent of {len(hist)} items")
        template = self.renderer.template_for(routed.aspects)
        specific = routed.aspects.intention is Intention.SPECIFIC
        pref = routed.preference_text
        intent = routed.intention_text
        instruction = self.renderer.rerank(
            routed.aspects, history=shown, candidates=pool, template_id=template.id,
            preference=fit_to_slot(pref, "preference", template.text, False)
            if pref and Preference.EXPLICIT in routed.aspects.preference else None,
            intention=fit_to_slot(intent, "intention", template.text, specific) if intent else None,
        )
        titles = [str(self.dataset.titles[i]) for i in pool]
        llm = self.scorer.score([instruction.text], [titles], self.settings.normalize)[0]
        ret = self._retrieval_scores(hist, routed.intention_text or routed.preference_text, pool)
        final = llm if self.settings.fusion_weight is None else (
            self.settings.fusion_weight * standardize(llm[None])[0]
            + (1 - self.settings.fusion_weight) * standardize(ret[None])[0])
        order = np.argsort(-final, kind="stable")[:k]
        items = [RecommendedItem(str(self.dataset.item_ids[pool[j]]), titles[j], float(final[j]), float(llm[j]),
                                 float(ret[j])) for j in order]
        if self.scorer.truncated:
            notes.append("instruction cut to the model's context (oldest history dropped)")
        return RecommendResult(items, instruction.text, routed.aspects.key(), instruction.template_id,
                               routed.kind, notes)

    def _retrieve(self, hist: np.ndarray, text: str | None, seen: set[int]) -> list[int]:
        n = self.settings.n_candidates
        lists: list[list[int]] = []
        if text and self.text_retriever is not None:
            lists.append(self.text_retriever.search(text, k=n + len(seen)).items.tolist())
        lists.append(self.retriever.recommend(hist, k=n + len(seen), exclude_seen=False).items.tolist())
        pool: list[int] = []
        for rank in range(max(len(x) for x in lists)):  # interleave: the best of each first
            for ranked in lists:
                if rank < len(ranked) and ranked[rank] not in seen and ranked[rank] not in pool:
                    pool.append(int(ranked[rank]))
        return pool[:n]

    def _retrieval_scores(self, hist: np.ndarray, text: str | None, pool: list[int]) -> np.ndarray:
        cands = np.asarray([pool], dtype=np.int64)
        score = standardize(self.retriever.score([hist], cands))[0]
        if text and self.text_retriever is not None:
            score = score + standardize(self.text_retriever.score([hist], cands, [text]))[0]
        return score

    def _first_stage_only(self, hist: np.ndarray, pool: list[int], k: int, routed, notes: list[str],
                          request: str | None) -> RecommendResult:
        ret = self._retrieval_scores(hist, request, pool)
        order = np.argsort(-ret, kind="stable")[:k]
        items = [RecommendedItem(str(self.dataset.item_ids[pool[j]]), str(self.dataset.titles[pool[j]]),
                                 float(ret[j]), None, float(ret[j])) for j in order]
        return RecommendResult(items, "", routed.aspects.key(), "", routed.kind, notes)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path, model_source: str | Path | None = None) -> Path:
        """Write the recommender folder atomically.

        `model_source`: the folder the model was loaded from (a LoRA adapter or a full model),
        copied into model/; None keeps `settings.model` as a reference (e.g. `default`).
        """
        path = Path(path)
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
        path = Path(path)
        if not (path / SETTINGS_FILE).is_file():
            raise InstructRecError(f"{path} is not a saved recommender (no {SETTINGS_FILE}); create one with "
                                   "`instructrec quickstart` or `Recommender.save`.")
        raw = json.loads((path / SETTINGS_FILE).read_text())
        settings = RecommenderSettings(**raw)
        if settings.version > FORMAT_VERSION:
            raise InstructRecError(f"{path} was written by a newer instructrec; upgrade to load it.")
        dataset = Dataset.load(path / "data")
        retriever = load_retriever(path / "retriever")
        text = load_retriever(path / "text_retriever") if (path / "text_retriever").exists() else None
        model_spec = str(path / "model") if settings.model == "model" else settings.model
        model = load_model(model_spec, device=device)
        templates = [path / "templates" / name for name in settings.template_files]
        return cls(dataset, model, retriever, text, settings, templates)
