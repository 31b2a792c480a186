"""Experiments as recipes: a typed, validated spec of data, instruction builds, tuning, retrievers,
experiments (task x candidates x users x methods) and the recommender to save.

On disk a recipe is YAML (see `benchmarks/recipes/games-table6.yaml` and the built-in
`experiments/recipes/quickstart.yaml`); `load_recipe` validates it (unknown keys, wrong types,
unknown tasks, candidate specs, methods, retriever and training settings are errors that name the
field) before anything runs. `run_recipe` (`experiments.runner`) runs it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from instructrec.errors import InstructRecError

_STRICT = ConfigDict(extra="forbid")


@dataclass
class HardNegativesSpec:
    """Hard training negatives (`instructions.negatives`): a share from a retriever's favourites."""

    __pydantic_config__ = _STRICT
    retriever: str
    """A retriever (in `retrievers:` or by registry name) whose top items for each example's history
    give the hard negatives."""
    share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    """Fraction of each example's negatives from the retriever's favourites (the rest uniform)."""
    pool: Annotated[int, Field(ge=1)] = 20
    """How many of its best items (history and target excluded) they are drawn from."""


@dataclass
class InstructionsSpec:
    """One instruction build (train and valid splits) with the 39-template library."""

    __pydantic_config__ = _STRICT
    train_examples: int = 240
    """Training instructions (split `train`: targets inside the training sequences)."""
    valid_examples: int = 32
    """Validation instructions (split `valid`): the trainer's HR@1 checks pick the best checkpoint."""
    mix: dict[str, float] = field(default_factory=lambda: {"T3": 4.0})
    """Template weights by id, aspects (`P1,I0,T3`), group, task form (`T3`) or family; 0 leaves out."""
    templates: list[str] = field(default_factory=list)
    """Extra template files (YAML, the library's format) added to the built-in library."""
    teacher: str = "extractive"
    """Teacher that writes preference and intention texts (`extractive`: offline, deterministic)."""
    candidate_labels: Literal["numbers", "letters"] = "numbers"
    """Reranking candidates listed `numbers` (answer: the title; the paper's form) or `letters`
    (answer: the letter; trains the listwise head, `model.listwise`)."""
    history_items: int = 20
    """Most recent history items shown per instruction (fewer: shorter, cheaper examples)."""
    history_chars: int = 1200
    """Character budget of the history slot (the oldest titles dropped until it fits)."""
    title_chars: int = 160
    """Longest title shown (longer ones cut with an ellipsis). The model records this prompt budget
    (history items and characters, title characters) and its reranker cuts served prompts alike."""
    candidate_notes: str | None = None
    """A retriever (in `retrievers:` or by registry name) whose rank of each reranking candidate is
    written next to its title (`instructions.notes`); evaluate such a model with `+NAME@note`."""
    candidate_order: str | None = None
    """A retriever whose order lists each reranking instruction's candidates, its favourite first
    (instead of shuffled); evaluate such a model with `+NAME@order`."""
    candidate_prior: str | None = None
    """A retriever whose z-scored scores of each reranking instruction's candidates are recorded
    with it; a model tuned on them learns a residual over that prior (`TrainSettings.prior_weight`)
    and is evaluated with `+NAME@prior`."""
    hard_negatives: HardNegativesSpec | None = None
    """Draw a share of every example's negatives from a retriever's top items for its history
    (`{retriever: sasrec, share: 0.5, pool: 20}`); None: all negatives uniform random (the paper's)."""
    item_tokens: bool = False
    """Follow each history and candidate title by its item's soft-token marker (collaborative soft
    tokens, `model.item_tokens`); the model trained on it needs `item_tokens: RETRIEVER`."""
    targets: Literal["all", "last"] = "all"
    """Training targets: `all` items of the training sequences after the first, or only the `last`
    one of each evaluated user. With a `holdout: 1` retriever as `candidate_notes`/`_order`/`_prior`,
    `last` gives training instructions whose first-stage ranks are as good as at test time (a first
    stage fitted on a target ranks it better than it ranks a held-out one)."""

    def hashed(self) -> dict[str, Any]:
        """The settings that identify the build; fields added later count only when set, so
        builds made before they existed keep their hash."""
        out = asdict(self)
        for name, default in (("candidate_labels", "numbers"), ("history_items", 20), ("candidate_notes", None),
                              ("candidate_order", None), ("history_chars", 1200), ("title_chars", 160),
                              ("targets", "all"), ("hard_negatives", None), ("item_tokens", False),
                              ("candidate_prior", None)):
            if out[name] == default:
                del out[name]
        return out


@dataclass
class ModelSpec:
    """One instruction-tuning run."""

    __pydantic_config__ = _STRICT
    base: str = "default"
    """Model to tune: `default` (bundled SmolLM2-135M-Instruct), `tiny` (a random tiny Llama built
    from the instructions' vocabulary: smoke tests), another model of this recipe (its tuned weights,
    a LoRA adapter folded in first: training continued; give it another `seed` to draw other
    examples), a model folder or a hub id in the local cache."""
    instructions: str = "main"
    """Name of the instruction build (in `instructions:`) to train on."""
    train: dict[str, Any] = field(default_factory=dict)
    """`training.TrainSettings` fields (e.g. lora, max_steps, batch_size, lora_r); `out_dir` is the stage's."""
    item_tokens: str | None = None
    """A sequential retriever (in `retrievers:` or by registry name: sasrec, gru4rec) whose item
    embeddings become the soft tokens of the items in its instructions (`model.item_tokens`;
    the build needs `item_tokens: true`); the projector trains with the adapter."""


@dataclass
class MethodEntry:
    """A method with a report label."""

    __pydantic_config__ = _STRICT
    method: str
    """The method (`eval.methods` grammar): a retriever, llm:MODEL, llm:MODEL+RETRIEVER[@ROLE]..."""
    name: str
    """Its label in reports (and the key of its fitted fusion weight)."""


@dataclass
class ExperimentSpec:
    """One evaluation: every method on the same users and candidates."""

    __pydantic_config__ = _STRICT
    name: str
    """Name (folder names, reports, `--experiments`)."""
    methods: list[str | MethodEntry]
    """Methods in report order; `llm:NAME` names a model of `models:` (or a model spec such as `default`)."""
    task: str = "seqrec"
    """seqrec | search | psearch-i1 | psearch-i2 | psearch-p2 (or their aspects)."""
    candidates: str = "random:9"
    """random:N | hard:RETRIEVER:N | groups:C[:RETRIEVER] | file:PATH."""
    users: int | None = 1000
    """Seeded test users (None: all)."""
    valid_users: int = 200
    """Seeded validation users for fitting fused methods' weights."""
    queries: str = "teacher"
    """Query texts of I1/I2/P2 tasks: teacher | title-keywords | a JSONL file."""
    ties: str = "random"
    """Tie-breaking: random | pessimistic | optimistic."""
    full_ranking: bool = False
    """Also rank the true item among all items (retrievers only)."""
    pairs: list[list[str]] | None = None
    """Paired differences to report as [a, b] method names (default: every pair)."""
    history_items: Annotated[int, Field(ge=1)] | None = None
    """Most recent history titles in the instructions of LLM methods whose model records no prompt
    budget of its own (zero-shot models); None: 20, the paper's. A tuned model renders its prompts
    as it was trained, whatever this says."""


@dataclass
class RecommenderSpec:
    """The servable recommender the recipe saves (retrieve, rerank, fuse with fitted weights)."""

    __pydantic_config__ = _STRICT
    model: str = "tuned"
    """The LLM: a name in `models:` or a model spec."""
    retriever: str = "sasrec"
    """First stage from the history."""
    text_retriever: str | None = "bm25"
    """First stage from the request text (None: history only)."""
    fusion_from: str | None = None
    """Method name whose per-task fitted weights the recommender uses (None: LLM score alone): a
    z-score mix (`llm:MODEL+RETRIEVER...`: its LLM weight) or a stacker of the LLM and exactly the
    recommender's signals (`stack:llm:MODEL+RETRIEVER@history+TEXT_RETRIEVER@text`: one weight each)."""
    n_candidates: int = 20
    """Pool size the LLM reranks per request."""
    notes: bool = False
    """Write the history retriever's ranks into the instruction (a model tuned with `candidate_notes`)."""
    order: bool = False
    """List the candidates in the history retriever's order (a model tuned with `candidate_order`)."""
    prior: bool = False
    """Add the history retriever's weighted z-scores to the LLM's (a model tuned with `candidate_prior`)."""


@dataclass
class Recipe:
    """An experiment: data -> instructions -> models and retrievers -> experiments -> recommender."""

    __pydantic_config__ = _STRICT
    name: str
    """Name of the recipe (default output folder `runs/<name>`)."""
    data: str = "movielens"
    """`movielens` (embedded MovieLens-100K), a dataset folder (`data prepare`) or a RecBole folder."""
    seed: int = 0
    """Seed of instructions, training, retrievers (where they take one), users and candidates."""
    instructions: dict[str, InstructionsSpec] = field(default_factory=lambda: {"main": InstructionsSpec()})
    """Instruction builds by name."""
    retrievers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Settings per retriever name (e.g. sasrec: {epochs: 30}); unlisted retrievers use defaults. A
    name that is not a registered retriever names a variant: `sasrec-ce: {retriever: sasrec,
    ce_negatives: 0}` (two settings of one model side by side). `holdout: 1` fits a variant without
    each evaluated user's last training item (the first stage of `targets: last` instructions)."""
    models: dict[str, ModelSpec] = field(default_factory=dict)
    """Tuning runs by name (methods say `llm:NAME`)."""
    experiments: list[ExperimentSpec] = field(default_factory=list)
    """Evaluations, run in order."""
    recommender: RecommenderSpec | None = None
    """The recommender to save in `<out>/recommender` (None: none)."""

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def experiment(self, name: str) -> ExperimentSpec:
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise InstructRecError(f"recipe {self.name} has no experiment {name!r}; it has "
                               f"{[e.name for e in self.experiments]}.")


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` (list items by index, `*` for every item) in a raw recipe dict."""
    keys = path.split(".")
    nodes: list[Any] = [raw]
    for key in keys[:-1]:
        nxt = []
        for node in nodes:
            if key == "*" and isinstance(node, list):
                nxt.extend(node)
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                nxt.append(node[int(key)])
            elif isinstance(node, dict):
                nxt.append(node.setdefault(key, {}))
            else:
                raise InstructRecError(f"--set {path}: {key!r} does not name a part of the recipe.")
        nodes = nxt
    last = keys[-1]
    for node in nodes:
        if isinstance(node, list) and last.isdigit():
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise InstructRecError(f"--set {path}: cannot set {last!r} there.")


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """`PATH=VALUE` pairs (VALUE read as YAML: numbers, lists, null, text)."""
    out = []
    for pair in pairs:
        path, sep, value = pair.partition("=")
        if not sep or not path:
            raise InstructRecError(f"cannot read --set {pair!r}; write PATH=VALUE, e.g. experiments.*.users=300.")
        out.append((path.strip(), yaml.safe_load(value)))
    return out


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a raw recipe (types, unknown keys, and every name it uses)."""
    try:
        recipe = TypeAdapter(Recipe).validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:8])
        raise InstructRecError(f"{source}: {problems}") from None
    check_recipe(recipe, source)
    return recipe


def load_recipe(path: str | Path, overrides: list[tuple[str, Any]] = ()) -> Recipe:
    """Read a YAML recipe (or `builtin:NAME`), apply `overrides` (`set_path`), validate it."""
    text, source = read_recipe_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InstructRecError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InstructRecError(f"{source}: a recipe is a YAML mapping (name:, data:, experiments: ...).")
    raw = copy.deepcopy(raw)
    for key, value in overrides:
        set_path(raw, key, value)
    return recipe_from_dict(raw, source)


def read_recipe_text(path: str | Path) -> tuple[str, str]:
    spec = str(path)
    if spec.startswith("builtin:"):
        name = spec[len("builtin:"):]
        res = resources.files("instructrec.experiments") / "recipes" / f"{name}.yaml"
        if not res.is_file():
            raise InstructRecError(f"no built-in recipe {name!r}.")
        return res.read_text(encoding="utf-8"), spec
    p = Path(path)
    if not p.is_file():
        raise InstructRecError(f"recipe {p} does not exist; write one (see benchmarks/recipes/) or use builtin:quickstart.")
    return p.read_text(encoding="utf-8"), str(p)


def check_recipe(recipe: Recipe, source: str) -> None:
    """Names and specs a recipe uses must exist and parse (fail before hours of work, not during)."""
    from instructrec.candidates.base import create_retriever
    from instructrec.eval.candidate_sets import parse_spec
    from instructrec.eval.protocol import get_task

    def bad(msg: str) -> InstructRecError:
        return InstructRecError(f"{source}: {msg}")

    from instructrec.instructions.builder import mix_weights
    from instructrec.instructions.templates import load_templates

    for name, spec in recipe.instructions.items():  # a mix key that names no template fails the build, hours in
        try:
            mix_weights(load_templates(*spec.templates), spec.mix)
            hard = spec.hard_negatives
            if hard is not None and hard.retriever not in recipe.retrievers:
                create_retriever(hard.retriever)  # an unknown name fails here, not after the first stages' fits
        except InstructRecError as exc:
            raise bad(f"instructions.{name}: {exc}") from None
    for name, params in recipe.retrievers.items():
        try:
            kind, settings = retriever_entry(name, params)
            retriever_holdout(params)
            create_retriever(kind, **settings)
        except InstructRecError as exc:
            raise bad(f"retrievers.{name}: {exc}") from None
    for name, model in recipe.models.items():
        if model.instructions not in recipe.instructions:
            raise bad(f"models.{name}.instructions: no instruction build {model.instructions!r} "
                      f"(builds: {sorted(recipe.instructions)}).")
        train_settings(model, "check")  # raises on an unknown or invalid training setting
        if bool(model.item_tokens) != recipe.instructions[model.instructions].item_tokens:
            raise bad(f"models.{name}: item tokens need both `item_tokens: RETRIEVER` on the model and "
                      f"`item_tokens: true` on its build {model.instructions!r}; set both or neither.")
        if model.item_tokens and model.item_tokens not in recipe.retrievers:
            try:
                create_retriever(model.item_tokens)
            except InstructRecError as exc:
                raise bad(f"models.{name}.item_tokens: {exc}") from None
        chain, base = [name], model.base
        while base in recipe.models:  # continued training: the bases must end outside the recipe's models
            if base in chain:
                raise bad(f"models.{name}.base: the models' bases form a cycle ({' -> '.join([*chain, base])}).")
            chain.append(base)
            base = recipe.models[base].base
    names = [e.name for e in recipe.experiments]
    if len(set(names)) != len(names):
        raise bad(f"experiment names must be unique: {names}.")
    for exp in recipe.experiments:
        get_task(exp.task)
        parse_spec(exp.candidates)
        labels = []
        for entry in exp.methods:
            method = method_of(entry)
            labels.append(method.name)
            if method.llm is not None and method.llm == "":
                raise bad(f"experiments.{exp.name}: write llm:MODEL in a recipe (a name in models: or a model spec).")
        if len(set(labels)) != len(labels):
            raise bad(f"experiments.{exp.name}: method names must be unique: {labels}.")
        for pair in exp.pairs or []:
            if len(pair) != 2 or not set(pair) <= set(labels):
                raise bad(f"experiments.{exp.name}.pairs: {pair} must name two of its methods {labels}.")
    rec = recipe.recommender
    if rec is not None and rec.fusion_from is not None:
        found = [m for e in recipe.experiments for m in map(method_of, e.methods) if m.name == rec.fusion_from]
        if not found:
            raise bad(f"recommender.fusion_from: no method named {rec.fusion_from!r} in the experiments.")
        served = stacker_signals_served(rec)
        for m in found:
            if m.stacked and (m.llm is None or fused_signals(m) != served):
                example = "+".join([f"stack:llm:{rec.model}"] + [f"{n}@{r}" for n, r in served])
                raise bad(f"recommender.fusion_from: {rec.fusion_from!r} is a stacker of other signals than the "
                          f"recommender's (the LLM, {', '.join(f'{n}@{r}' for n, r in served)}): its weights would "
                          f"weigh the wrong scores; name a stacker of exactly those ({example}) or a z-score mix.")


def retriever_entry(name: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(registered retriever, its settings) of a `retrievers:` entry; `retriever:` names the
    registered model of a variant (module docstring of `Recipe.retrievers`)."""
    params = dict(params)
    params.pop("holdout", None)
    return str(params.pop("retriever", name)), params


def retriever_holdout(params: dict[str, Any]) -> int:
    """`holdout: N` of a `retrievers:` entry: the retriever is fitted with the last N items of every
    evaluated user's training sequence withheld (`data.split.withhold_last`), so that it has not
    seen the targets of instructions built with `targets: last` (0: fitted on everything)."""
    value = params.get("holdout", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InstructRecError(f"holdout must be a whole number >= 0, not {value!r}.")
    return value


def stacker_signals_served(rec: RecommenderSpec) -> list[tuple[str, str]]:
    """The retriever signals a saved recommender stacks after the LLM's, in its order
    (`Recommender`: the history retriever, then the text retriever)."""
    return [(rec.retriever, "history")] + ([(rec.text_retriever, "text")] if rec.text_retriever else [])


def fused_signals(method: Any) -> list[tuple[str, str]]:
    """A method's (retriever, role) pairs that add a score (`note` and `order` shape the prompt)."""
    from instructrec.eval.methods import NOT_FUSED

    return [(name, role) for name, role in method.fused if role not in NOT_FUSED]


def method_of(entry: str | MethodEntry) -> Any:
    from instructrec.eval.methods import parse_method

    return parse_method(entry) if isinstance(entry, str) else parse_method(entry.method, entry.name)


def train_settings(model: ModelSpec, out_dir: str, seed: int | None = None) -> Any:
    """The `TrainSettings` of a recipe model (validated: unknown fields are errors); `seed` (the
    recipe's) is the training seed unless the model's settings give their own."""
    from dataclasses import fields

    from instructrec.model.prompt import PromptSettings
    from instructrec.training.trainer import TrainSettings

    values = dict(model.train)
    if seed is not None:
        values.setdefault("seed", seed)
    known = {f.name for f in fields(TrainSettings)} - {"out_dir"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InstructRecError(f"unknown training setting(s) {unknown}; known: {sorted(known)}.")
    if isinstance(values.get("prompt"), dict):
        values["prompt"] = PromptSettings(**values["prompt"])
    try:
        return TrainSettings(out_dir=out_dir, **values)
    except (TypeError, ValueError) as exc:
        raise InstructRecError(f"training settings: {exc}") from None
