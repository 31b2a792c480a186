"""Methods the evaluation can judge, by name: retrievers, the LLM, fusions, a saved recommender.

Grammar of a method (CLI `--method`, recipe `methods:`):

    popularity | sasrec | bm25 | ...                 a fitted retriever alone
    llm | llm:MODEL                                  the LLM reranker alone (MODEL: a model spec,
                                                     or a recipe's model name; default `--model`)
    llm[:MODEL]+RET[@ROLE][+RET[@ROLE]...]           the LLM fused with retrievers' signals; the
                                                     LLM weight is fitted on validation users
    llm[:MODEL]*P[+RET...]                           LLM scores averaged over P orders of the
                                                     candidates (`RerankSettings.permutations`)
    llm[:MODEL]~pmi[*P][+RET...]                     LLM scores calibrated: minus each candidate's
                                                     score without the history (`RerankSettings.calibration`)
    stack:llm[:MODEL]+RET[@ROLE]...                  a learned stacker: every signal (the LLM and each
    stack:RET[@ROLE]+RET[@ROLE]...                   retriever) gets its own weight, fitted on validation
                                                     users (`recommender.reranker.fit_stack_weights`);
                                                     without an LLM it stacks the retrievers alone
    recommender                                      a saved recommender as a whole (`--recommender`)

ROLE says what a retriever reads (`recommender.reranker.Role`): `history`, `text` (the task's query
text only) or `auto` (default: the text where the task has one and the retriever reads text, else
the history); `note` writes its ranks of the candidates into the LLM's instruction instead of
fusing (for models tuned with `candidate_notes`), e.g. `llm:tuned-notes+sasrec@note`; `order`
lists the candidates in its order, its favourite first (for models tuned with `candidate_order`),
e.g. `llm:tuned-order+sasrec@order+sasrec`; `prior` adds its z-scores times the model's
`prior_weight` to the LLM's scores (for models tuned with `candidate_prior`, a residual over it),
e.g. `llm:tuned-prior+sasrec@prior`. Every LLM-based method runs through
`recommender.reranker.Reranker`, the code that serves requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import InstructRecError
from instructrec.eval.protocol import RetrieverScorer, Scorer, Task
from instructrec.recommender.reranker import CALIBRATIONS, NOT_FUSED, Calibration, FusionWeight

ROLES = ("history", "text", "auto", "note", "order", "prior")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method (module docstring)."""

    text: str
    """The method as written."""
    name: str
    """Its label in reports (default: the text)."""
    retriever: str | None = None
    """A retriever evaluated alone."""
    llm: str | None = None
    """The LLM's model key for LLM methods; `""` = the run's default model."""
    fused: tuple[tuple[str, str], ...] = ()
    """(retriever, role) pairs fused with the LLM."""
    recommender: bool = False
    """The saved recommender as a whole."""
    permutations: int = 1
    """Candidate orders the LLM's scores are averaged over."""
    stacked: bool = False
    """A learned stacker (`stack:`) instead of the z-score mix."""
    calibration: Calibration = "none"
    """How the LLM's scores are calibrated (`~pmi`: `RerankSettings.calibration`)."""

    @property
    def needs_fusion_weight(self) -> bool:
        return self.stacked or bool(self.llm is not None and any(role not in NOT_FUSED for _, role in self.fused))

    @property
    def retrievers(self) -> list[str]:
        return [self.retriever] if self.retriever else [name for name, _ in self.fused]


def parse_method(text: str, name: str | None = None) -> MethodSpec:
    """Parse a method string; a malformed one is an error that shows the grammar."""
    text = text.strip()
    label = name or text
    usage = ("write RETRIEVER, llm[:MODEL][~pmi][*P], llm[:MODEL]+RETRIEVER[@history|@text|@auto|@note|@order|@prior]..., "
             "stack:METHOD or recommender (e.g. sasrec, llm, llm:runs/tuned+sasrec, stack:llm+sasrec+bm25)")
    if not text:
        raise InstructRecError(f"empty method; {usage}.")
    if text == "recommender":
        return MethodSpec(text, label, recommender=True)
    if text.startswith("stack:"):
        return _parse_stack(text, label, usage)
    head, *rest = text.split("+")
    head, star, perms = head.partition("*") if head.startswith("llm") else (head, "", "")
    if head.partition("~")[0] != "llm" and not head.startswith("llm:"):
        if rest or "@" in head:
            raise InstructRecError(f"cannot read method {text!r}: only an LLM method fuses retrievers; {usage}.")
        return MethodSpec(text, label, retriever=head)
    if star and not (perms.isdigit() and int(perms) >= 1):
        raise InstructRecError(f"cannot read method {text!r}: `*P` needs a whole number of orders >= 1; {usage}.")
    head, tilde, calibration = head.partition("~")
    if tilde and calibration not in CALIBRATIONS[1:]:
        raise InstructRecError(f"cannot read method {text!r}: `~` takes a calibration ({', '.join(CALIBRATIONS[1:])}); "
                               f"{usage}.")
    model = head[len("llm:"):] if head.startswith("llm:") else ""
    if head.startswith("llm:") and not model:
        raise InstructRecError(f"cannot read method {text!r}: `llm:` needs a model; {usage}.")
    fused = _fused(rest, text, usage)
    return MethodSpec(text, label, llm=model, fused=fused, permutations=int(perms) if star else 1,
                      calibration=calibration or "none")  # type: ignore[arg-type]  # checked against CALIBRATIONS


def _fused(parts: Sequence[str], text: str, usage: str) -> tuple[tuple[str, str], ...]:
    fused = []
    for part in parts:
        ret, _, role = part.partition("@")
        role = role or "auto"
        if not ret or role not in ROLES:
            raise InstructRecError(f"cannot read {part!r} in method {text!r}; {usage}.")
        fused.append((ret, role))
    return tuple(fused)


def _parse_stack(text: str, label: str, usage: str) -> MethodSpec:
    body = text[len("stack:"):]
    if body.startswith(("stack:", "recommender")):
        raise InstructRecError(f"cannot read method {text!r}: `stack:` takes an LLM method or retrievers; {usage}.")
    if body.startswith("llm"):
        inner = parse_method(body)
        spec = replace(inner, text=text, name=label, stacked=True)
    else:  # retrievers alone: `stack:sasrec+bm25` (a bare retriever method cannot fuse, so parse here)
        spec = MethodSpec(text, label, fused=_fused(body.split("+"), text, usage), stacked=True)
    signals = (spec.llm is not None) + sum(role not in NOT_FUSED for _, role in spec.fused)
    if signals < 2:
        raise InstructRecError(f"cannot read method {text!r}: a stacker weighs at least two signals "
                               f"(e.g. stack:llm+sasrec or stack:sasrec+bm25); {usage}.")
    return spec


class ModelStore:
    """LLM scorers by model key, each loaded once (with one shared score memo per model).

    `aliases` maps names (a recipe's trained models) to model specs; `default` is the model of a
    bare `llm` method. Loading is lazy: a run whose LLM results are all cached loads nothing.
    """

    def __init__(self, default: str | None = None, aliases: dict[str, str] | None = None,
                 loader: Callable[[str], Any] | None = None, normalize: str = "mean") -> None:
        self.default, self.aliases, self.normalize = default, dict(aliases or {}), normalize
        self._loader = loader
        self._cache: dict[str, Any] = {}

    def spec(self, key: str) -> str:
        """The model spec behind a key."""
        if not key:
            if self.default is None:
                raise InstructRecError("an LLM method needs a model: pass --model (e.g. --model default or a "
                                       "training output folder) or write llm:MODEL.")
            key = self.default
        return self.aliases.get(key, key)

    def __call__(self, key: str) -> Any:
        from instructrec.recommender.reranker import LLMScores

        spec = self.spec(key)
        if spec not in self._cache:
            if self._loader is not None:
                scorer = self._loader(spec)
            else:
                from instructrec import distributed
                from instructrec.model.backend import load_model
                from instructrec.model.listwise import make_scorer

                with distributed.main_first():  # rank 0 converts `default` once; the others load it
                    scorer = make_scorer(load_model(spec, device=distributed.device()))
            self._cache[spec] = LLMScores(scorer, self.normalize)
        return self._cache[spec]

    def keep_only(self, key: str | None) -> None:
        """Release every loaded model except `key`'s (None: all), so that a run evaluating several
        LLMs one after the other holds one model at a time (each fp32 copy of the default model is
        about 0.5 GB); a released model is loaded again if asked for later."""
        keep = self.spec(key) if key is not None else None
        dropped = [spec for spec in self._cache if spec != keep]
        for spec in dropped:
            del self._cache[spec]
        if dropped:
            import gc

            gc.collect()  # model modules hold reference cycles: free their tensors now, not later


@dataclass
class EvalContext:
    """What building a method's scorer may need."""

    dataset: Dataset
    split: LeaveOneOutSplit
    retrievers: Callable[[str], Any]
    """Fitted retriever by name (`eval.runner.RetrieverStore`)."""
    models: ModelStore
    recommender: Any = None
    """A loaded `Recommender` for the `recommender` method."""
    history_items: int = 20
    """History items shown to the LLM."""
    _renderer: Any = None

    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            from instructrec.instructions.render import Renderer

            self._renderer = Renderer(self.dataset)
        return self._renderer


def _role(retriever: Any, role: str, task: Task) -> str:
    if role != "auto":
        return role
    return "auto" if getattr(retriever, "uses_query", False) and task.query is not None else "history"


def build_reranker(method: MethodSpec, ctx: EvalContext, task: Task, fusion_weight: FusionWeight | None = None) -> Any:
    """The `Reranker` behind an LLM method (or the saved recommender's), for one task."""
    from instructrec.instructions.schema import Aspects
    from instructrec.recommender.reranker import Reranker, RerankSettings

    key = Aspects.parse(task.aspects).key()
    if method.recommender:
        if ctx.recommender is None:
            raise InstructRecError("the `recommender` method needs a saved recommender: pass --recommender DIR.")
        return ctx.recommender.reranker
    if method.llm is None and not method.stacked:
        raise InstructRecError(f"{method.text} is a retriever, not an LLM method.")
    retrievers = [(r := ctx.retrievers(name), _role(r, role, task)) for name, role in method.fused]
    fusion = {key: fusion_weight} if fusion_weight is not None else {}
    llm = ctx.models(method.llm) if method.llm is not None else None
    return Reranker(ctx.dataset, llm, retrievers, ctx.renderer,  # type: ignore[arg-type]
                    RerankSettings(ctx.history_items, fusion, method.permutations, method.calibration))


def build_scorer(method: MethodSpec, ctx: EvalContext, task: Task, fusion_weight: FusionWeight | None = None) -> Scorer:
    """A Scorer (`eval.protocol`) for a method on a task."""
    from instructrec.recommender.reranker import RerankerScorer

    if method.retriever is not None:
        from instructrec.candidates.base import REGISTRY, _import_all

        _import_all()
        variant = getattr(ctx.retrievers, "knows", lambda name: False)(method.retriever)  # a recipe's variant
        if method.retriever not in REGISTRY and not variant:
            raise InstructRecError(f"unknown method {method.retriever!r}; choose a retriever "
                                   f"({', '.join(sorted(REGISTRY))}), llm, llm+RETRIEVER or recommender.")
        return RetrieverScorer(ctx.retrievers(method.retriever), ctx.split, method.name)
    if method.needs_fusion_weight and fusion_weight is None:
        raise InstructRecError(f"{method.text} fuses the LLM with retrievers: fit its weight first "
                               "(`eval.runner.fit_method_fusion`).")
    reranker = build_reranker(method, ctx, task, fusion_weight)
    users = np.asarray(ctx.split.users)
    return RerankerScorer(reranker, task.aspects, users, method.name)


def batch_size_for(method: MethodSpec, default: int) -> int:
    """LLM methods score a few users per call (the model runs them as one batch); retrievers many."""
    return min(default, 16) if (method.llm is not None or method.recommender) else default


def method_names(methods: Sequence[MethodSpec]) -> list[str]:
    names = [m.name for m in methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InstructRecError(f"method names must be unique in one evaluation; repeated: {dup}.")
    return names
