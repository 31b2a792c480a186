"""The quality benchmark on the paper's Games data (InstructRec Table 6 and its Figure 3 question).

Instruction-tunes the default model (LoRA) on training-split instructions from
`../shared/data/amazon-games`, then evaluates on seeded test users with exactly the same
candidates for every method:

* <P1,I0,T3>, 1 + 9 random negatives: tuned LLM, fused, zero-shot LLM, SASRec, BERT4Rec,
  GRU4Rec, popularity;
* <P1,I0,T3>, 1 + 9 hard negatives from our SASRec;
* <P1,P2,T3> with teacher-written preferences; <P0,I2,T3> with title-keyword intentions (+ BM25);
* generalisation: a second adapter trained without any <P0,I2,*> template, evaluated on <P0,I2,T3>.

Every stage is resumable (rerun the same command). Prints one JSON line per (experiment, method)
and writes a report (JSON, Markdown, PNG) per experiment under --out.

    nice -n 10 .venv/bin/python benchmarks/bench_quality_games.py --users 1000 --train-examples 4000 --steps 500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from instructrec.data.split import leave_one_out
from instructrec.eval.candidate_sets import CandidateSet, build_candidates
from instructrec.eval.protocol import RetrieverScorer, evaluate, get_task, select_rows
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
    ap.add_argument("--skip-holdout", action="store_true")
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
    zero_shot, tuned = CandidateScorer(load_model(a.model, device="cpu")), CandidateScorer(load_model(str(adapter)))
    rows = select_rows(split, a.users, a.seed)
    valid_rows = select_rows(split, a.valid_users, a.seed + 1)
    qs = QuickstartSettings(out=a.out, seed=a.seed)
    for name, task_name, spec, extra in EXPERIMENTS:
        task = get_task(task_name)
        aspects = task.aspects.strip("<>")
        cands = _candidates(a.out / "candidates" / f"{name}.npz", spec, dataset, split, rows, a.seed, store)
        queries = TeacherQueries(teacher, split, dataset, QUERY_KIND[task.query]) if task.query else None
        llm = LLMScorer(dataset, tuned, aspects, name="llm-tuned")
        retr = RetrieverScorer(store("sasrec"), split, "sasrec")
        weight = fit_weight_on_validation(llm, retr, dataset, split, valid_rows, qs, teacher, task_name)
        scorers = [RetrieverScorer(store(m), split, m) for m in (*CLASSICAL, *extra)]
        scorers += [LLMScorer(dataset, zero_shot, aspects, name="llm-zero-shot"), llm,
                    FusionScorer(llm, retr, weight, name="llm-tuned+sasrec")]
        if name == "search-i2" and not a.skip_holdout:
            held = _tune(a, _holdout_instructions(a, dataset, teacher), a.out / "model-holdout-P0-I2")
            scorers.append(LLMScorer(dataset, CandidateScorer(load_model(str(held))), aspects,
                                     name="llm-tuned-without-P0,I2"))
        results = []
        for scorer in scorers:
            bs = 8 if isinstance(scorer, (LLMScorer, FusionScorer)) else 4096
            res = evaluate(scorer, split, cands, task, queries, seed=a.seed, batch_size=bs)
            results.append(res)
            print(json.dumps({"experiment": name, "method": res.method, "users": len(cands),
                              **{m: round(v["mean"], 4) for m, v in res.summary.items()},
                              "ci95_hr1": [round(res.summary["HR@1"]["ci_low"], 4),
                                           round(res.summary["HR@1"]["ci_high"], 4)],
                              "seconds": round(res.seconds, 1)}), flush=True)
        write_report(results, a.out / f"report-{name}", {**vars(a), "out": str(a.out), "fusion_weight": weight,
                                                          "retrievers": str(a.retrievers)}, title=name)
    print(json.dumps({"total_seconds": round(time.monotonic() - started, 1)}))


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
