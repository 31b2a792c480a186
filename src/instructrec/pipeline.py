"""The end-to-end job behind `instructrec quickstart`: data -> instructions -> tuning -> evaluation
-> a saved `Recommender`.

Every stage writes into one output folder and is skipped when its output is already complete, so
an interrupted run resumes where it stopped (the instruction builder and the trainer also resume
inside their stage). All methods are evaluated on exactly the same seeded users and candidates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instructrec.data.dataset import MANIFEST, Dataset
from instructrec.data.split import LeaveOneOutSplit, leave_one_out
from instructrec.eval.candidate_sets import CandidateSet, build_candidates
from instructrec.eval.protocol import EvalResult, RetrieverScorer, evaluate, get_task
from instructrec.eval.report import write_report
from instructrec.eval.runner import RetrieverStore
from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.teachers.base import TeacherRequest
from instructrec.instructions.teachers.extractive import ExtractiveTeacher
from instructrec.instructions.templates import load_templates
from instructrec.model.backend import load_model
from instructrec.model.scoring import CandidateScorer
from instructrec.recommender.llm_scorer import FusionScorer, LLMScorer, fit_fusion_weight
from instructrec.recommender.recommender import Recommender, RecommenderSettings
from instructrec.training.trainer import TrainSettings, train

log = logging.getLogger(__name__)

TASKS = ("seqrec", "psearch-i2")
"""Sequential recommendation <P1,I0,T3> and one intention task <P1,I2,T3>."""


TINY = {"model": "tiny", "users": 20, "valid_users": 16, "steps": 8, "batch_size": 4, "sasrec_epochs": 2}
"""`--tiny`: a random tiny model and a few users: a smoke test of every stage in about a minute."""


@dataclass
class QuickstartSettings:
    """Scale of the end-to-end run."""

    out: Path = Path("runs/quickstart")
    """Folder for everything the run writes (data, instructions, models, report, recommender)."""
    data: str = "movielens"
    """`movielens` (embedded MovieLens-100K), a dataset folder (`data prepare`) or a RecBole folder."""
    model: str = "default"
    """`default` (bundled SmolLM2-135M-Instruct), `tiny` (random tiny Llama), or a model path."""
    steps: int = 30
    """LoRA optimizer steps."""
    batch_size: int = 8
    """Training examples per step."""
    users: int = 60
    """Seeded test users evaluated per task."""
    valid_users: int = 30
    """Seeded validation users used to fit the fusion weight."""
    negatives: int = 9
    """Random negatives per user (1 + 9 candidates, as in the paper)."""
    seed: int = 0
    """Seed for users, candidates, instructions and training."""
    sasrec_epochs: int = 30
    """SASRec training epochs (early stopping on validation inside)."""
    sasrec_minutes: float = 2.0
    """Wall-clock budget of SASRec training (the best epoch so far is kept)."""
    tasks: tuple[str, ...] = field(default=TASKS)


class TeacherQueries:
    """Per-user query texts written by the instruction teacher from the target item only
    (specific intention I2, vague intention I1) or from the history (explicit preference P2)."""

    def __init__(self, teacher: ExtractiveTeacher, split: LeaveOneOutSplit, dataset: Dataset, kind: str,
                 stage: str = "test") -> None:
        self.teacher, self.split, self.dataset, self.kind, self.stage = teacher, split, dataset, kind, stage

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> list[str]:
        reqs = []
        for row, target in zip(rows, targets, strict=True):
            user = str(self.dataset.user_ids[self.split.users[int(row)]])
            if self.kind == "preference":
                hist = tuple(int(i) for i in self.split.history(int(row), self.stage, 20))
                reqs.append(TeacherRequest("preference", user, history=hist))
            else:
                reqs.append(TeacherRequest(self.kind, user, item=int(target)))
        return [a.text for a in self.teacher.answer(reqs)]


QUERY_KIND = {"I1": "vague_intention", "I2": "specific_intention", "P2": "preference"}


def load_dataset(spec: str, out: Path) -> Dataset:
    """The run's dataset, prepared once into `out/data`."""
    folder = out / "data"
    if (folder / MANIFEST).exists():
        return Dataset.load(folder)
    if spec == "movielens":
        from instructrec.data.loaders.movielens import load_movielens_100k

        dataset = load_movielens_100k()
    elif (Path(spec) / MANIFEST).exists():
        dataset = Dataset.load(spec)
    else:
        from instructrec.data.loaders.recbole_atomic import load_recbole

        dataset = load_recbole(spec)
    dataset.save(folder)
    return dataset


DEFAULT_MIX = {"T3": 4.0}
"""Reranking (the evaluated task form) gets 4x the weight of each other template."""


def build_split(dataset: Dataset, teacher: ExtractiveTeacher, split: str, n: int, seed: int, out: Path,
                mix: dict[str, float] | None = None) -> Path:
    """Instruction data for `split` in `out` (resumes an interrupted build; skips a finished one)."""
    if not (out / "stats.json").exists():
        build_instructions(dataset, load_templates(), teacher, mix or DEFAULT_MIX, split, seed, out,
                           BuildSettings(max_examples=n))
    return out


def _tiny_model(out: Path, instructions: Path, dataset: Dataset) -> str:
    from instructrec.model.tiny import build_tiny_causal

    corpus = [str(t) for t in dataset.titles]
    for shard in sorted(instructions.rglob("shard-*.jsonl")):
        for line in shard.read_text().splitlines():
            rec = json.loads(line)
            corpus += [rec["instruction"], rec["target"]]
    return str(build_tiny_causal(out, corpus, vocab_size=1500))


def run_quickstart(s: QuickstartSettings, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Run every stage; returns the summary (also written to `out/summary.json`)."""
    started = time.monotonic()
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(s.data, out)
    split = leave_one_out(dataset)
    say(f"data: {dataset!r}")

    teacher = ExtractiveTeacher().fit(dataset)
    n_train = s.steps * s.batch_size
    instr = out / "instructions"
    build_split(dataset, teacher, "train", n_train, s.seed, instr / "train")
    build_split(dataset, teacher, "valid", max(32, s.valid_users), s.seed, instr / "valid")
    say(f"instructions: {n_train} training examples in {instr}")

    store = RetrieverStore(dataset, split, out / "retrievers",
                           {"sasrec": {"epochs": s.sasrec_epochs, "seed": s.seed,
                                       "max_minutes": s.sasrec_minutes}})
    sasrec, popularity = store("sasrec"), store("popularity")
    bm25 = store("bm25")
    say("retrievers: sasrec, popularity and bm25 fitted")

    model_spec = _tiny_model(out / "tiny-model", instr, dataset) if s.model == "tiny" else s.model
    base = load_model(model_spec, device="cpu")
    zero_shot = CandidateScorer(base)
    adapter = out / "model"
    if not (adapter / "adapter_config.json").exists():
        train(model_spec, instr, TrainSettings(out_dir=str(adapter), lora=True, max_steps=s.steps,
                                               batch_size=s.batch_size, eval_steps=s.steps, seed=s.seed,
                                               max_eval_examples=32, logging_steps=max(1, s.steps // 10)))
    tuned = CandidateScorer(load_model(str(adapter), device="cpu"))
    say(f"model: LoRA-tuned {model_spec} for {s.steps} steps -> {adapter}")

    rng_rows = np.random.default_rng(s.seed)
    test_rows = np.sort(rng_rows.choice(len(split), size=min(s.users, len(split)), replace=False))
    valid_rows = np.sort(rng_rows.choice(len(split), size=min(s.valid_users, len(split)), replace=False))
    results: list[EvalResult] = []
    weights: dict[str, float] = {}
    for task_name in s.tasks:
        task = get_task(task_name)
        aspects = task.aspects.strip("<>")
        queries = TeacherQueries(teacher, split, dataset, QUERY_KIND[task.query]) if task.query else None
        cands = random_candidate_set(out, dataset, split, test_rows, s, "test", task_name)
        zs = LLMScorer(dataset, zero_shot, aspects, name="llm-zero-shot")
        llm = LLMScorer(dataset, tuned, aspects, name="llm-tuned")
        retr = RetrieverScorer(sasrec, split, "sasrec")
        weights[task_name] = fit_weight_on_validation(llm, retr, dataset, split, valid_rows, s, teacher, task_name)
        fused = FusionScorer(llm, retr, weights[task_name], name="llm-tuned+sasrec")
        for scorer, bs in ((RetrieverScorer(popularity, split, "popularity"), 4096), (retr, 4096),
                           (zs, 8), (llm, 8), (fused, 8)):
            say(f"evaluating {scorer.name} on {task_name} ({len(cands)} users)")
            results.append(evaluate(scorer, split, cands, task, queries, seed=s.seed, batch_size=bs))
    report = write_report(results, out / "report", {**_plain(asdict(s)), "fusion_weights": weights},
                          title=f"quickstart on {dataset.manifest.source}")
    rec = Recommender(dataset, tuned.loaded, sasrec, bm25,
                      RecommenderSettings(fusion_weight=weights.get("seqrec")))
    rec_dir = rec.save(out / "recommender", model_source=adapter)
    summary = {"results": [{"method": r.method, "task": r.task, **{m: v["mean"] for m, v in r.summary.items()}} for r in results],
               "report": {k: str(v) for k, v in report.items()}, "recommender": str(rec_dir),
               "fusion_weights": weights, "seconds": round(time.monotonic() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def random_candidate_set(out: Path, dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray, s: QuickstartSettings,
                stage: str, task: str) -> CandidateSet:
    path = out / "candidates" / f"{stage}-random{s.negatives}-{task}.npz"
    if path.exists():
        return CandidateSet.load(path)
    cands = build_candidates(f"random:{s.negatives}", dataset, split, rows, s.seed, None, stage)
    cands.save(path)
    return cands


def fit_weight_on_validation(llm: LLMScorer, retr: RetrieverScorer, dataset: Dataset, split: LeaveOneOutSplit,
                rows: np.ndarray, s: QuickstartSettings, teacher: ExtractiveTeacher, task_name: str) -> float:
    task = get_task(task_name)
    cands = random_candidate_set(Path(s.out), dataset, split, rows, s, "valid", task_name)
    hists = [split.history(int(r), "valid") if task.history else np.zeros(0, np.int64) for r in cands.rows]
    queries = (TeacherQueries(teacher, split, dataset, QUERY_KIND[task.query], "valid")(cands.rows, cands.targets())
               if task.query else None)
    llm_scores = llm.score(cands.rows, hists, cands.items, queries)
    ret_scores = retr.score(cands.rows, hists, cands.items, queries)
    return fit_fusion_weight(llm_scores, ret_scores, cands.target_pos, seed=s.seed)


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
