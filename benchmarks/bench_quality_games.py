"""The quality benchmark on the paper's Games data (InstructRec Table 6 and its Figure 3 question).

Instruction-tunes the default model (LoRA) on training-split instructions from
`../shared/data/amazon-games`, then evaluates on seeded test users with exactly the same
candidates for every method:

* <P1,I0,T3>, 1 + 9 random negatives: tuned LLM, fused, zero-shot LLM, SASRec, BERT4Rec,
  GRU4Rec, popularity;
* <P1,I0,T3>, 1 + 9 hard negatives from our SASRec;
* <P1,P2,T3> with teacher-written preferences; <P0,I2,T3> with title-keyword intentions (+ BM25);
* generalisation: a second adapter trained without any <P0,I2,*> template, evaluated on <P0,I2,T3>.

Every stage is resumable (rerun the same command): adapters, candidate sets, fusion weights and
each method's per-user results are cached under --out. Prints one JSON line per (experiment, method)
and writes a report (JSON, Markdown, PNG) per experiment under --out.

    nice -n 10 .venv/bin/python benchmarks/bench_quality_games.py --users 1000 --train-examples 4000 --steps 500
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from instructrec.atomic import atomic_write
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit, leave_one_out
from instructrec.eval.candidate_sets import CandidateSet, build_candidates
from instructrec.eval.metrics import paired_difference
from instructrec.eval.protocol import EvalResult, RetrieverScorer, Scorer, evaluate, get_task, select_rows
from instructrec.eval.report import write_report
from instructrec.eval.runner import RetrieverStore
from instructrec.instructions.teachers.extractive import ExtractiveTeacher
from instructrec.model.backend import load_model
from instructrec.model.scoring import CandidateScorer
from instructrec.pipeline import (
    DEFAULT_MIX,
    QUERY_KIND,
    QuickstartSettings,
    TeacherQueries,
    build_split,
    fit_weight_on_validation,
    load_dataset,
)
from instructrec.recommender.llm_scorer import FusionScorer, LLMScorer
from instructrec.training.trainer import TrainSettings, train

CLASSICAL = ("popularity", "sasrec", "bert4rec", "gru4rec")
EXPERIMENTS = (  # name, task, candidate spec, extra classical methods
    ("seqrec-random", "seqrec", "random:9", ()),
    ("seqrec-hard", "seqrec", "hard:sasrec:9", ()),
    ("psearch-p2", "psearch-p2", "random:9", ()),
    ("search-i2", "search", "random:9", ("bm25",)),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/amazon-games")
    ap.add_argument("--out", type=Path, default=Path("runs/games-quality"))
    ap.add_argument("--retrievers", type=Path, default=None, help="folder of fitted retrievers to reuse")
    ap.add_argument("--model", default="default")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--valid-users", type=int, default=200)
    ap.add_argument("--train-examples", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-holdout", action="store_true", help="no held-out-type adapter in search-i2")
    ap.add_argument("--skip-zero-shot", action="store_true", help="leave the zero-shot LLM out")
    ap.add_argument("--experiments", type=lambda v: [e for e in v.split(",") if e],
                    default=[e[0] for e in EXPERIMENTS],
                    help="comma-separated subset to run, in the listed order; '' only trains")
    a = ap.parse_args()
    started = time.monotonic()
    dataset = load_dataset(a.data, a.out)
    split = leave_one_out(dataset)
    teacher = ExtractiveTeacher().fit(dataset)
    instr = a.out / "instructions"
    build_split(dataset, teacher, "train", a.train_examples, a.seed, instr / "train")
    build_split(dataset, teacher, "valid", a.valid_users, a.seed, instr / "valid")
    store = RetrieverStore(dataset, split, a.retrievers or a.out / "retrievers")
    adapter = _tune(a, instr, a.out / "model")
    if not a.experiments:
        return
    ctx = _Context(a, dataset, split, teacher, store, _Models(a.model, adapter),
                   select_rows(split, a.users, a.seed), select_rows(split, a.valid_users, a.seed + 1))
    for name, task_name, spec, extra in EXPERIMENTS:
        if name in a.experiments:
            _run_experiment(ctx, name, task_name, spec, extra)
    print(json.dumps({"total_seconds": round(time.monotonic() - started, 1)}))


@dataclass
class _Context:
    a: argparse.Namespace
    dataset: Dataset
    split: LeaveOneOutSplit
    teacher: ExtractiveTeacher
    store: RetrieverStore
    models: _Models
    rows: np.ndarray
    valid_rows: np.ndarray


def _run_experiment(ctx: _Context, name: str, task_name: str, spec: str, extra: tuple[str, ...]) -> None:
    a, dataset, split, store = ctx.a, ctx.dataset, ctx.split, ctx.store
    task = get_task(task_name)
    aspects = task.aspects.strip("<>")
    run = f"{name}-{a.users}u-seed{a.seed}"  # caches are per user sample: another --users draws anew
    cands = _candidates(a.out / "candidates" / f"{run}.npz", spec, dataset, split, ctx.rows, a.seed, store)
    queries = TeacherQueries(ctx.teacher, split, dataset, QUERY_KIND[task.query]) if task.query else None
    cache = a.out / "results" / run
    llm = LLMScorer(dataset, ctx.models.tuned, aspects, name="llm-tuned")
    retr = RetrieverScorer(store("sasrec"), split, "sasrec")
    weight_file = cache / "fusion_weight.json"
    if not weight_file.exists():
        # Fitted on validation users with 1 + 9 random candidates (also for the hard-negative set).
        weight = fit_weight_on_validation(llm, retr, dataset, split, ctx.valid_rows,
                                          QuickstartSettings(out=a.out, seed=a.seed), ctx.teacher, task_name)
        atomic_write(weight_file, json.dumps({"weight": weight, "valid_users": int(a.valid_users)}))
    weight = json.loads(weight_file.read_text())["weight"]

    def held_out() -> Scorer:
        held = _tune(a, _holdout_instructions(a, dataset, ctx.teacher), a.out / "model-holdout-P0-I2")
        return LLMScorer(dataset, CandidateScorer(load_model(str(held), device="cpu")), aspects,
                         name="llm-tuned-without-P0,I2")

    methods: list[tuple[str, Callable[[], Scorer]]] = [
        (m, lambda m=m: RetrieverScorer(store(m), split, m)) for m in (*CLASSICAL, *extra)]
    if not a.skip_zero_shot:
        methods.append(("llm-zero-shot", lambda: LLMScorer(dataset, ctx.models.zero_shot, aspects, name="llm-zero-shot")))
    methods += [("llm-tuned", lambda: llm),
                ("llm-tuned+sasrec", lambda: FusionScorer(llm, retr, weight, name="llm-tuned+sasrec"))]
    if name == "search-i2" and not a.skip_holdout:
        methods.append(("llm-tuned-without-P0,I2", held_out))
    results = []
    for method, make in methods:
        res = _load_result(cache / f"{method}.json")
        if res is None:
            scorer = make()
            bs = 8 if isinstance(scorer, (LLMScorer, FusionScorer)) else 4096
            res = evaluate(scorer, split, cands, task, queries, seed=a.seed, batch_size=bs)
            _save_result(cache / f"{method}.json", res)
        results.append(res)
        print(json.dumps({"experiment": name, "method": res.method, "users": len(cands),
                          **{m: round(v["mean"], 4) for m, v in res.summary.items()},
                          "ci95_hr1": [round(res.summary["HR@1"]["ci_low"], 4),
                                       round(res.summary["HR@1"]["ci_high"], 4)],
                          "seconds": round(res.seconds, 1)}), flush=True)
    paired = _paired(results)
    for line in paired:
        print(json.dumps({"experiment": name, **line}), flush=True)
    write_report(results, a.out / f"report-{run}", {**vars(a), "out": str(a.out), "fusion_weight": weight,
                                                      "retrievers": str(a.retrievers), "paired": paired}, title=name)


PAIRS = (("llm-tuned", "llm-zero-shot"), ("llm-tuned+sasrec", "sasrec"), ("llm-tuned", "llm-tuned-without-P0,I2"))


def _paired(results: list[EvalResult]) -> list[dict]:
    """Paired per-user differences (same users, same candidates) for the comparisons that matter."""
    by = {r.method: r for r in results}
    out = []
    for x, y in PAIRS:
        if x in by and y in by:
            d = paired_difference(by[x].per_user, by[y].per_user, by[x].rows, by[y].rows)
            out.append({"paired": f"{x} - {y}", **{m: [round(d[m][k], 4) for k in ("mean", "ci_low", "ci_high")]
                                                   for m in ("HR@1", "NDCG@5")}})
    return out


class _Models:
    """Loads the zero-shot and tuned models on first use (a fully cached run loads neither)."""

    def __init__(self, base: str, adapter: Path) -> None:
        self._base, self._adapter = base, adapter

    @cached_property
    def zero_shot(self) -> CandidateScorer:
        return CandidateScorer(load_model(self._base, device="cpu"))

    @cached_property
    def tuned(self) -> CandidateScorer:
        return CandidateScorer(load_model(str(self._adapter), device="cpu"))


def _save_result(path: Path, res: EvalResult) -> None:
    """Per-method resume cache: an LLM pass over 1,000 users takes ~20 min on the 2-core CPU."""
    atomic_write(path, json.dumps({"method": res.method, "task": res.task, "candidates": res.candidates,
                                   "rows": res.rows.tolist(), "ranks": res.ranks.tolist(), "seconds": res.seconds,
                                   "per_user": {k: v.tolist() for k, v in res.per_user.items()}}))


def _load_result(path: Path) -> EvalResult | None:
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return EvalResult(d["method"], d["task"], d["candidates"], np.asarray(d["rows"]), np.asarray(d["ranks"]),
                      {k: np.asarray(v) for k, v in d["per_user"].items()}, d["seconds"])


def _tune(a: argparse.Namespace, instructions: Path, out: Path) -> Path:
    if not (out / "adapter_config.json").exists():
        t = time.monotonic()
        result = train(a.model, instructions, TrainSettings(out_dir=str(out), lora=True, max_steps=a.steps,
                                                            batch_size=a.batch_size, eval_steps=max(50, a.steps // 4),
                                                            max_eval_examples=100, seed=a.seed))
        print(json.dumps({"trained": str(out), "steps": result.global_step, "best_hr1": result.best_metric,
                          "seconds": round(time.monotonic() - t, 1)}), flush=True)
    return out


def _holdout_instructions(a: argparse.Namespace, dataset, teacher) -> Path:
    """Training data without any <P0,I2,*> template (the type the held-out evaluation uses)."""
    folder = a.out / "instructions-holdout-P0-I2"
    mix = {**DEFAULT_MIX, "P0,I2,T0": 0.0, "P0,I2,T1": 0.0, "P0,I2,T2": 0.0, "P0,I2,T3": 0.0}
    build_split(dataset, teacher, "train", a.train_examples, a.seed, folder / "train", mix)
    build_split(dataset, teacher, "valid", a.valid_users, a.seed, folder / "valid")
    return folder


def _candidates(path: Path, spec: str, dataset, split, rows: np.ndarray, seed: int, store) -> CandidateSet:
    if path.exists():
        return CandidateSet.load(path)
    cands = build_candidates(spec, dataset, split, rows, seed, store)
    cands.save(path)
    return cands


if __name__ == "__main__":
    main()
