"""`run_recipe`: run an experiment recipe stage by stage, reusing every stage whose settings match.

    <out>/data/<name>-<hash>/                    the prepared dataset
    <out>/instructions/<build>-<hash>/{train,valid}/   instruction builds (the builder resumes inside)
    <out>/retrievers/<name>-<hash>/              fitted first stages and baselines
    <out>/models/<name>-<hash>/                  tuned adapters (the trainer resumes from checkpoints)
    <out>/candidates/<experiment>-{test,valid}-<hash>.npz
    <out>/fusion/<experiment>/<method>-<hash>.json      fused methods' LLM weights (validation users)
    <out>/results/<experiment>/<method>-<hash>.json     per-user ranks and metrics of each method
    <out>/reports/<experiment>/results.{json,md,png}    tables with 95% CIs and paired differences
    <out>/recommender/                           the servable recommender
    <out>/summary.json                           every figure, stage (computed or reused) and timing

Every stage's hash covers its resolved settings and the hashes of what it reads (`stages`), so a
rerun after a kill resumes, and a changed setting recomputes exactly what depends on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from instructrec.atomic import atomic_write
from instructrec.data.dataset import MANIFEST, Dataset
from instructrec.data.split import LeaveOneOutSplit, leave_one_out, withhold_last
from instructrec.errors import InstructRecError
from instructrec.eval.candidate_sets import CandidateSet, parse_spec
from instructrec.eval.methods import MethodSpec, batch_size_for, build_scorer
from instructrec.eval.protocol import EvalResult, evaluate, full_ranking, get_task
from instructrec.eval.queries import query_provider
from instructrec.eval.report import write_report
from instructrec.eval.runner import (
    RunSettings,
    fit_method_fusion,
    make_context,
    paired_differences,
    paired_markdown,
    test_candidates,
    validation_candidates,
)
from instructrec.experiments.recipe import (
    ExperimentSpec,
    Recipe,
    method_of,
    retriever_entry,
    retriever_holdout,
    train_settings,
)
from instructrec.experiments.stages import Stage, StageLog
from instructrec.recommender.reranker import FusionWeight

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
LATER_TRAIN_SETTINGS = ("objective", "softmax_temperature", "softmax_negatives", "item_token_hidden")
"""`TrainSettings` fields added after models were first cached: in a model stage's hash only when not default."""


def load_dataset(spec: str) -> Dataset:
    """`movielens` (embedded MovieLens-100K), a dataset folder or a RecBole atomic folder."""
    if spec == "movielens":
        from instructrec.data.loaders.movielens import load_movielens_100k

        return load_movielens_100k()
    if (Path(spec) / MANIFEST).exists():
        return Dataset.load(spec)
    from instructrec.data.loaders.recbole_atomic import load_recbole

    return load_recbole(spec)


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class StageRetrievers:
    """Fitted retrievers by name, each a stage `retrievers/<name>-<hash>` (fitted once, then loaded)."""

    def __init__(self, stages: StageLog, recipe: Recipe, dataset: Dataset, split: LeaveOneOutSplit,
                 data: Stage) -> None:
        self.stages, self.recipe, self.dataset, self.split, self.data = stages, recipe, dataset, split, data
        self._cache: dict[str, Any] = {}

    def knows(self, name: str) -> bool:
        """Whether `name` is a variant defined in the recipe's `retrievers:`."""
        return name in self.recipe.retrievers

    def params(self, name: str) -> tuple[str, dict[str, Any]]:
        """(registered retriever, settings) of a name: a registered retriever or a recipe variant."""
        from dataclasses import fields

        from instructrec.candidates.base import REGISTRY, _import_all

        _import_all()
        kind, params = retriever_entry(name, self.recipe.retrievers.get(name, {}))
        if kind not in REGISTRY:
            raise InstructRecError(f"unknown retriever {name!r}; choose one of {sorted(REGISTRY)} or define it "
                                   "in the recipe's retrievers: with `retriever: NAME`.")
        if "seed" in {f.name for f in fields(REGISTRY[kind].Settings)}:
            params.setdefault("seed", self.recipe.seed)
        return kind, params

    def holdout(self, name: str) -> int:
        """Training items withheld per evaluated user when fitting `name` (recipe `holdout:`)."""
        return retriever_holdout(self.recipe.retrievers.get(name, {}))

    def stage(self, name: str) -> Stage:
        kind, params = self.params(name)
        settings: dict[str, Any] = {"retriever": kind, "params": params}
        holdout = self.holdout(name)
        if holdout:  # only when set: stages fitted before holdout existed keep their hash
            settings["holdout"] = holdout
        return self.stages.stage("retrievers", name, settings, [self.data])

    def key(self, name: str) -> str:
        """Identifies `name`'s fit (`<name>-<stage hash>`): what builds and models record of a first stage."""
        return f"{name}-{self.stage(name).hash}"

    def __call__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        from instructrec.candidates.base import REGISTRY, create_retriever, load_retriever

        stage = self.stage(name)
        kind, params = self.params(name)
        ckpt = stage.path.with_name(f".{stage.path.name}.checkpoint.pt")

        def fill(tmp: Path) -> None:
            from dataclasses import fields

            extra = {}
            if "checkpoint" in {f.name for f in fields(REGISTRY[kind].Settings)}:
                extra["checkpoint"] = str(ckpt)  # long torch trainings resume per epoch
            model = create_retriever(kind, **params, **extra)
            model.fit(self.dataset, withhold_last(self.split, self.holdout(name)))
            model.save(tmp)

        model = self.stages.folder(stage, fill, load_retriever)
        ckpt.unlink(missing_ok=True)
        self._cache[name] = model
        return model


class RecipeRun:
    """The state of one recipe run (see the module docstring for the stages)."""

    def __init__(self, recipe: Recipe, out: Path, say: Callable[[str], None], progress: bool) -> None:
        self.recipe, self.out, self.say, self.progress = recipe, out, say, progress
        self.stages = StageLog(out, say)
        self.data = self.stages.stage("data", Path(recipe.data).name or "data", {"data": recipe.data})
        self.dataset: Dataset = self.stages.run(self.data, lambda path: load_dataset(recipe.data).save(path)
                                                and Dataset.load(path), Dataset.load)
        self.split = leave_one_out(self.dataset)
        self.retrievers = StageRetrievers(self.stages, recipe, self.dataset, self.split, self.data)
        self._instructions: dict[str, tuple[Stage, Path]] = {}
        self._models: dict[str, tuple[Stage, Path]] = {}
        self._teacher: Any = None

    # -- instructions and models -------------------------------------------------------------
    @property
    def teacher(self) -> Any:
        if self._teacher is None:
            from instructrec.instructions.teachers.extractive import ExtractiveTeacher

            self._teacher = ExtractiveTeacher().fit(self.dataset)
        return self._teacher

    def instructions(self, name: str) -> tuple[Stage, Path]:
        if name in self._instructions:
            return self._instructions[name]
        from instructrec.instructions.builder import BuildSettings, build_instructions
        from instructrec.instructions.render import RenderSettings
        from instructrec.instructions.templates import load_templates

        spec = self.recipe.instructions[name]
        if spec.teacher != "extractive":
            raise InstructRecError(f"instructions.{name}.teacher: recipes build with the extractive teacher; "
                                   "build LLM-teacher data with `instructrec instructions build --teacher ...`.")
        settings = {**spec.hashed(), "seed": self.recipe.seed,
                    "template_files": {str(p): file_hash(p) for p in spec.templates}}
        deps: list[Stage | str] = [self.data]
        hard = spec.hard_negatives
        for first_stage in dict.fromkeys(n for n in (spec.candidate_notes, spec.candidate_order, spec.candidate_prior,
                                                     hard.retriever if hard else None) if n):
            deps.append(self.retrievers.stage(first_stage))
        stage = self.stages.stage("instructions", name, settings, deps)

        def compute(path: Path) -> Path:
            from instructrec.instructions.notes import CandidateNotes

            library = load_templates(*spec.templates)
            def ranker(name: str | None) -> CandidateNotes | None:
                return CandidateNotes(self.retrievers(name), self.retrievers.key(name)) if name else None

            notes, order, prior = (ranker(spec.candidate_notes), ranker(spec.candidate_order),
                                   ranker(spec.candidate_prior))
            negatives = None
            if hard is not None:
                from instructrec.instructions.negatives import HardNegatives

                negatives = HardNegatives(self.retrievers(hard.retriever), self.retrievers.key(hard.retriever),
                                          hard.share, hard.pool)
            for split, n in (("train", spec.train_examples), ("valid", spec.valid_examples)):
                render = RenderSettings(history_items=spec.history_items, history_chars=spec.history_chars,
                                        title_chars=spec.title_chars, candidate_labels=spec.candidate_labels,
                                        item_tokens=spec.item_tokens)
                build_instructions(self.dataset, library, self.teacher, spec.mix, split, self.recipe.seed,
                                   path / split, BuildSettings(max_examples=n, render=render, notes=notes,
                                                               order=order, prior=prior, negatives=negatives,
                                                               targets=spec.targets))
            return path

        self._instructions[name] = (stage, self.stages.run(stage, compute, lambda p: p))
        return self._instructions[name]

    def tiny_base(self, instructions: tuple[Stage, Path]) -> tuple[Stage, Path]:
        from instructrec.model.tiny import build_tiny_causal

        stage = self.stages.stage("models", "tiny-base", {"vocab_size": 1500}, [instructions[0]])

        def fill(tmp: Path) -> None:
            corpus = [str(t) for t in self.dataset.titles]
            for shard in sorted(instructions[1].rglob("shard-*.jsonl")):
                for line in shard.read_text().splitlines():
                    rec = json.loads(line)
                    corpus += [rec["instruction"], rec["target"]]
            build_tiny_causal(tmp / "model", corpus, vocab_size=1500)

        path = self.stages.folder(stage, fill, lambda p: p / "model")
        return stage, path

    def model(self, name: str) -> tuple[Stage, Path]:
        """A tuned model stage (LoRA adapter or full model folder)."""
        if name in self._models:
            return self._models[name]
        from instructrec.training.trainer import TrainSettings, train

        spec = self.recipe.models[name]
        instr = self.instructions(spec.instructions)
        deps: list[Stage | str] = [instr[0]]
        base = spec.base
        if base == "tiny":
            tiny = self.tiny_base(instr)
            deps.append(tiny[0])
            base = str(tiny[1])
            self._models["tiny"] = tiny
        elif base in self.recipe.models:  # training continued from another model of the recipe
            parent = self.model(base)
            deps.append(parent[0])
            base = str(parent[1])
        resolved = asdict(train_settings(spec, "<stage>", self.recipe.seed))
        resolved.pop("out_dir")
        defaults = {f.name: f.default for f in fields(TrainSettings)}
        for field_name in LATER_TRAIN_SETTINGS:  # settings added later count only when set: older models keep their hash
            if resolved[field_name] == defaults[field_name]:
                del resolved[field_name]
        settings: dict[str, Any] = {"base": spec.base, "train": resolved}
        if spec.item_tokens:  # only when set: models tuned before item tokens keep their hash
            deps.append(self.retrievers.stage(spec.item_tokens))
            settings["item_tokens"] = self.retrievers.key(spec.item_tokens)
        stage = self.stages.stage("models", name, settings, deps)

        def compute(path: Path) -> Path:
            from instructrec.model.item_tokens import item_table

            table = item_table(self.retrievers(spec.item_tokens), f"retriever {spec.item_tokens!r}") if spec.item_tokens else None
            result = train(base, instr[1], train_settings(spec, str(path), self.recipe.seed), item_table=table)
            self.say(f"model {name}: {result.global_step} steps, best validation HR@1 {result.best_metric}")
            return path

        self._models[name] = (stage, self.stages.run(stage, compute, lambda p: p))
        return self._models[name]

    def model_dep(self, key: str) -> Stage | str:
        if key in self.recipe.models:
            return self.model(key)[0]
        if key == "tiny" and "tiny" in self._models:
            return self._models["tiny"][0]
        return key

    def aliases(self, methods: list[MethodSpec]) -> dict[str, str]:
        out = {}
        for m in methods:
            if m.llm and m.llm in self.recipe.models:
                out[m.llm] = str(self.model(m.llm)[1])
        if "tiny" in self._models:
            out["tiny"] = str(self._models["tiny"][1])
        return out

    # -- experiments -------------------------------------------------------------------------
    def candidates(self, exp: ExperimentSpec, settings: RunSettings, stage_name: str, size: int = 10) -> tuple[Stage, CandidateSet]:
        spec = parse_spec(exp.candidates)
        deps: list[Stage | str] = [self.data]
        if spec.retriever:
            deps.append(self.retrievers.stage(spec.retriever))
        if spec.mode == "file":
            deps.append(file_hash(spec.path))
        if Path(exp.queries).is_file():
            deps.append(file_hash(exp.queries))
        info = {"candidates": exp.candidates, "users": exp.users if stage_name == "test" else exp.valid_users,
                "seed": self.recipe.seed, "stage": stage_name, "queries": exp.queries,
                **({"size": size} if stage_name == "valid" else {})}
        stage = self.stages.stage("candidates", f"{exp.name}-{stage_name}", info, deps, suffix=".npz")
        task = get_task(exp.task)

        def compute(path: Path) -> CandidateSet:
            if stage_name == "test":
                queries = query_provider(task.query, self.dataset, self.split, exp.queries, self.recipe.seed)
                cands = test_candidates(settings, self.dataset, self.split, self.retrievers, queries)
            else:
                cands = validation_candidates(settings, self.dataset, self.split, self.retrievers, size)
            cands.save(path)
            return cands

        return stage, self.stages.run(stage, compute, CandidateSet.load)

    def experiment(self, exp: ExperimentSpec) -> tuple[list[EvalResult], dict[str, float], dict[str, Any]]:
        task = get_task(exp.task)
        methods = [method_of(m) for m in exp.methods]
        settings = RunSettings([m.text for m in methods], exp.task, exp.candidates, exp.users, exp.valid_users,
                               self.recipe.seed, exp.ties, exp.full_ranking, exp.queries)  # type: ignore[arg-type]
        ctx = make_context(self.dataset, self.split, self.retrievers, None, aliases=self.aliases(methods),
                           history_items=exp.history_items)
        ctx_teacher = self.teacher if task.query is not None else None
        cstage, cands = self.candidates(exp, settings, "test")
        queries = query_provider(task.query, self.dataset, self.split, exp.queries, self.recipe.seed,
                                 teacher=ctx_teacher)
        results: list[EvalResult] = []
        weights: dict[str, FusionWeight] = {}
        for method in methods:
            if method.llm is not None:  # one LLM in memory at a time (zero-shot, then tuned); a retriever
                ctx.models.keep_only(method.llm)  # method between two of the same LLM keeps its memo
            model_deps = [self.model_dep(method.llm)] if method.llm is not None else []
            ret_deps = [self.retrievers.stage(r) for r in method.retrievers]
            common = {"method": method.text, "task": task.name, "queries": exp.queries, "seed": self.recipe.seed}
            if exp.history_items is not None and method.llm is not None:  # hashed only when set: older stages stay
                common["history_items"] = exp.history_items
            weight = None
            fusion_dep: list[Stage | str] = []
            if method.needs_fusion_weight:
                vstage, valid = self.candidates(exp, settings, "valid", cands.size)
                fstage = self.stages.stage("fusion", f"{exp.name}/{method.name}", common,
                                           [vstage, *model_deps, *ret_deps], suffix=".json")

                def fit(path: Path, method: MethodSpec = method, valid: CandidateSet = valid) -> FusionWeight:
                    vq = query_provider(task.query, self.dataset, self.split, exp.queries, self.recipe.seed,
                                        "valid", teacher=ctx_teacher)
                    w = fit_method_fusion(method, ctx, task, valid, vq, self.recipe.seed)
                    atomic_write(path, json.dumps({"weight": w, "valid_users": len(valid)}) + "\n")
                    return w

                weight = self.stages.run(fstage, fit, lambda p: json.loads(p.read_text())["weight"])
                weights[method.name] = weight
                fusion_dep = [fstage]
            rstage = self.stages.stage("results", f"{exp.name}/{method.name}",
                                       {**common, "ties": exp.ties, "name": method.name},
                                       [cstage, *model_deps, *ret_deps, *fusion_dep], suffix=".json")

            def score(path: Path, method: MethodSpec = method, weight: FusionWeight | None = weight) -> EvalResult:
                scorer = build_scorer(method, ctx, task, weight)
                spec = parse_spec(exp.candidates)
                res = evaluate(scorer, self.split, cands, task, queries, spec.group_size, exp.ties,
                               self.recipe.seed, batch_size_for(method, 2048), self.progress)
                res.settings.update({"method": method.text, **({"fusion_weight": weight} if weight is not None else {})})
                save_result(path, res)
                return res

            results.append(self.stages.run(rstage, score, load_result))
            if exp.full_ranking and method.retriever is not None:
                results.append(full_ranking(build_scorer(method, ctx, task), self.split, cands.rows, task, queries,
                                            cands.stage, exp.ties, self.recipe.seed, progress=self.progress))
        pairs = [tuple(p) for p in exp.pairs] if exp.pairs else None
        paired = paired_differences(results, pairs=pairs)  # type: ignore[arg-type]
        report = write_report(results, self.out / "reports" / exp.name,
                              {"recipe": self.recipe.name, "experiment": asdict(exp), "fusion_weights": weights,
                               "paired": paired, "candidate_set": {"spec": cands.spec, "users": len(cands),
                                                                   "size": cands.size, "stage": cands.stage}},
                              title=f"{self.recipe.name}: {exp.name} ({task.aspects}, {exp.candidates})",
                              extra_markdown=paired_markdown(paired))
        return results, weights, {"report": {k: str(v) for k, v in report.items()}, "paired": paired}

    # -- the recommender ---------------------------------------------------------------------
    def save_recommender(self, weights: dict[str, dict[str, FusionWeight]]) -> Path:
        from instructrec.candidates.base import load_retriever
        from instructrec.instructions.schema import Aspects
        from instructrec.model.backend import load_model
        from instructrec.recommender.recommender import Recommender, RecommenderSettings

        spec = self.recipe.recommender
        assert spec is not None
        fusion: dict[str, FusionWeight] = {}
        for exp in self.recipe.experiments:
            w = weights.get(exp.name, {}).get(spec.fusion_from or "")
            key = Aspects.parse(get_task(exp.task).aspects).key()
            if w is not None and key not in fusion:
                fusion[key] = w
        trained = spec.model in self.recipe.models
        model_path = str(self.model(spec.model)[1]) if trained else spec.model
        deps: list[Stage | str] = [self.data, self.model_dep(spec.model), self.retrievers.stage(spec.retriever)]
        if spec.text_retriever:
            deps.append(self.retrievers.stage(spec.text_retriever))
        full = self.stages.stage("recommender", "recommender", {**asdict(spec), "fusion": fusion}, deps)
        # a stable path the README and the quickstart print; its record sits beside it
        stage = Stage(full.kind, full.name, full.settings, full.hash, self.out / "recommender", file=True)

        def compute(path: Path) -> Path:
            retriever = load_retriever(self.retrievers.stage(spec.retriever).path)
            text = load_retriever(self.retrievers.stage(spec.text_retriever).path) if spec.text_retriever else None
            rec = Recommender(self.dataset, load_model(model_path, device="cpu"), retriever, text,
                              RecommenderSettings(n_candidates=spec.n_candidates, fusion=fusion, notes=spec.notes,
                                                  order=spec.order, prior=spec.prior,
                                                  model="model" if trained else spec.model))
            return rec.save(path, model_source=model_path if trained else None)

        return self.stages.run(stage, compute, lambda p: p)


def run_recipe(recipe: Recipe, out: str | Path | None = None, experiments: list[str] | None = None,
               say: Callable[[str], None] = log.info, progress: bool = True) -> dict[str, Any]:
    """Run `recipe` (or the named `experiments` of it) in `out` (default `runs/<name>`); returns the
    summary, also written to `<out>/summary.json`."""
    started = time.monotonic()
    out = Path(out or Path("runs") / recipe.name)
    out.mkdir(parents=True, exist_ok=True)
    selected = [recipe.experiment(n) for n in experiments] if experiments else list(recipe.experiments)
    run = RecipeRun(recipe, out, say, progress)
    say(f"data: {run.dataset!r}")
    rows: list[dict[str, Any]] = []
    weights: dict[str, dict[str, FusionWeight]] = {}
    reports: dict[str, Any] = {}
    for exp in selected:
        results, w, extra = run.experiment(exp)
        weights[exp.name] = w
        reports[exp.name] = extra
        for r in results:
            s = r.summary
            rows.append({"experiment": exp.name, "task": r.task, "candidates": r.candidates, "method": r.method,
                         "users": int(len(r.rows)), **{m: v["mean"] for m, v in s.items()},
                         "HR@1_ci": s["HR@1"]["ci_high"] - s["HR@1"]["mean"] if "HR@1" in s else None})
    recommender = None
    if recipe.recommender is not None and len(selected) == len(recipe.experiments):
        recommender = str(run.save_recommender(weights))
    elif recipe.recommender is not None:
        say("recommender: not saved (only some experiments were run; its fusion weights need them all)")
    summary = {"recipe": recipe.name, "out": str(out), "results": rows, "fusion_weights": weights,
               "reports": reports, "recommender": recommender, "stages": run.stages.entries,
               "stage_seconds": run.stages.timings(), "stage_peak_rss_mb": run.stages.peak_memory(),
               "seconds": round(time.monotonic() - started, 1),
               "settings": recipe.to_dict()}
    atomic_write(out / SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def save_result(path: Path, res: EvalResult) -> None:
    """A method's per-user results (an LLM pass over 1,000 users takes ~20 min on the 2-core CPU)."""
    doc = {"method": res.method, "task": res.task, "candidates": res.candidates, "rows": res.rows.tolist(),
           "ranks": res.ranks.tolist(), "seconds": res.seconds, "settings": res.settings,
           "per_user": {k: v.tolist() for k, v in res.per_user.items()}}
    atomic_write(path, json.dumps(doc, default=str))


def load_result(path: Path) -> EvalResult:
    d = json.loads(path.read_text())
    return EvalResult(d["method"], d["task"], d["candidates"], np.asarray(d["rows"]), np.asarray(d["ranks"]),
                      {k: np.asarray(v) for k, v in d["per_user"].items()}, d["seconds"], d.get("settings", {}))
