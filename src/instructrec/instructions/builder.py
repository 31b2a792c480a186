"""Building instruction data: `build_instructions(dataset, templates, teacher, mix, split, seed, out)`.

Which examples exist (the plan) follows the leave-one-out protocol with no leakage:
- train: for every user, every item of the *training* sequence after the first is a target, its
  history the items before it (for evaluated users the training sequence stops before the
  validation target; users with < 3 interactions contribute their whole sequence);
- valid: one example per evaluated user, target = second-to-last item;
- test: one example per evaluated user, target = last item, history includes the validation item.
Negatives are drawn from items outside the user's sequence of that split (uniformly, or a share
from a first stage's favourites: `BuildSettings.negatives`). Intentions come only
from the target item's own data; preferences only from the history before the target.

Output: `shard-NNNNN.jsonl` files (one `Example.to_record()` per line, plus `id`) that
`datasets.load_dataset("json", data_files=f"{out}/shard-*.jsonl")` reads, `stats.json` with
per-template, per-aspect, per-answer-form and per-teacher-source counts, and `build.json` (the
settings fingerprint and progress). Each shard is written under a temporary name and renamed when
complete, and shards depend only on (seed, shard number), so a build killed at any moment and run
again skips finished shards and ends with exactly the files an uninterrupted build writes.

Several processes (`torchrun` / `accelerate launch`, `instructrec.distributed`): rank r builds the
shards k with `k % world_size == r` (its own teacher, e.g. a local LLM on its own GPU, answers
its shards' requests), then rank 0 writes `stats.json` and marks the build complete; the files
are those of a one-process build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from instructrec import distributed
from instructrec.atomic import atomic_write, remove_stale
from instructrec.data.dataset import Dataset
from instructrec.data.split import leave_one_out
from instructrec.errors import InstructRecError
from instructrec.instructions.negatives import HardNegatives
from instructrec.instructions.notes import CandidateNotes
from instructrec.instructions.render import Renderer, RenderSettings, candidate_label, sample_negatives
from instructrec.instructions.schema import AnswerForm, Example, Instruction, Intention, TaskForm
from instructrec.instructions.teachers.base import Teacher, TeacherAnswer, TeacherRequest
from instructrec.instructions.templates import Template, TemplateLibrary

log = logging.getLogger(__name__)
SplitName = Literal["train", "valid", "test"]
STATE = "build.json"
STATS = "stats.json"
FORMAT = 1


@dataclass(frozen=True)
class BuildSettings:
    """What to build besides dataset, templates, teacher, mix, split and seed."""

    max_examples: int | None = None
    """Cap on examples (a deterministic random subset of the plan); None = all."""
    examples_per_target: int = 1
    """Templates drawn per (user, target) pair."""
    shard_size: int = 20_000
    """Examples per shard file (also the unit of resumption and of sharing the work between processes)."""
    render: RenderSettings = RenderSettings()
    """Slot filling (history length and budget, number of candidates)."""
    notes: CandidateNotes | None = None
    """Annotate reranking candidates with a first stage's ranks (`instructions.notes`); None: titles only."""
    order: CandidateNotes | None = None
    """List reranking candidates in a first stage's order, its favourite first (`instructions.notes`,
    `order` style); None: shuffled."""
    prior: CandidateNotes | None = None
    """Record each reranking instruction's candidates' z-scored first-stage scores (`meta.prior`,
    in listed order; `instructions.notes`, `prior` style): the prior a model tuned on them adds its
    scores to; None: none."""
    negatives: HardNegatives | None = None
    """Draw a share of every example's negatives from a first stage's favourites for its history
    (`instructions.negatives`); None: all uniform random."""
    targets: Literal["all", "last"] = "all"
    """Split `train` only: `all` items of the training sequences after the first are targets, or
    only the `last` one of each evaluated user (the item a `holdout` first stage has not seen)."""


@dataclass
class Plan:
    """The examples to build: per example a user, a sequence position and a template."""

    users: np.ndarray
    positions: np.ndarray
    templates: np.ndarray


def mix_weights(templates: TemplateLibrary, mix: Mapping[str, float] | None) -> np.ndarray:
    """Sampling weight per template. Keys: template ids, aspect keys ('P1,I0,T3'), groups
    ('preference', 'intention', 'both'), task forms ('T0'..'T3') or families ('cot', ...);
    a template's weight is the product of the weights of the keys it matches (default 1)."""
    weights = np.ones(len(templates))
    if not mix:
        return weights / weights.sum()
    used = set()
    for i, t in enumerate(templates):
        for key in (t.id, t.aspects.key(), t.group, t.aspects.task.value, t.family):
            if key in mix:
                weights[i] *= float(mix[key])
                used.add(key)
    unknown = sorted(set(mix) - used)
    if unknown:
        raise InstructRecError(f"mix key(s) {unknown} match no template; use template ids, aspect keys like "
                               "'P1,I0,T3', groups, task forms T0-T3 or families.")
    if (weights < 0).any() or weights.sum() <= 0:
        raise InstructRecError("mix weights must be >= 0 with at least one positive.")
    return weights / weights.sum()


def split_sequences(dataset: Dataset, split: SplitName,
                    targets: Literal["all", "last"] = "all") -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per user the sequence visible in `split`, and the (user, position) pairs that are targets
    (`targets` "last": in split train only the last training item of each evaluated user)."""
    loo = leave_one_out(dataset)
    seqs: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * dataset.n_users
    if split == "train":
        for u in loo.train_only:
            seqs[int(u)] = dataset.sequences[int(u)]
        for row, u in enumerate(loo.users):
            seqs[int(u)] = loo.train[row]
        if targets == "last":
            lengths = np.array([len(t) for t in loo.train], dtype=np.int64)
            keep = lengths >= 2
            return seqs, loo.users[keep].astype(np.int64), lengths[keep] - 1
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        users = np.repeat(np.arange(dataset.n_users), np.maximum(lengths - 1, 0))
        starts = np.cumsum(np.maximum(lengths - 1, 0)) - np.maximum(lengths - 1, 0)
        positions = np.arange(len(users)) - np.repeat(starts, np.maximum(lengths - 1, 0)) + 1
        return seqs, users, positions
    for row, u in enumerate(loo.users):
        cut = len(loo.train[row]) + (1 if split == "valid" else 2)
        seqs[int(u)] = dataset.sequences[int(u)][:cut]
    users = loo.users.astype(np.int64)
    positions = np.array([len(seqs[int(u)]) - 1 for u in users], dtype=np.int64)
    return seqs, users, positions


def make_plan(dataset: Dataset, templates: TemplateLibrary, mix: Mapping[str, float] | None,
              split: SplitName, seed: int, settings: BuildSettings) -> tuple[list[np.ndarray], Plan]:
    seqs, users, positions = split_sequences(dataset, split, settings.targets)
    rng = np.random.default_rng(seed)
    reps = settings.examples_per_target
    users, positions = np.repeat(users, reps), np.repeat(positions, reps)
    if settings.max_examples is not None and settings.max_examples < len(users):
        keep = np.sort(rng.choice(len(users), size=settings.max_examples, replace=False))
        users, positions = users[keep], positions[keep]
    chosen = rng.choice(len(templates), size=len(users), p=mix_weights(templates, mix))
    return seqs, Plan(users, positions, chosen)


def fingerprint(dataset: Dataset, templates: TemplateLibrary, teacher: Teacher, mix: Mapping[str, float] | None,
                split: str, seed: int, settings: BuildSettings) -> str:
    parts = {
        "format": FORMAT, "dataset": [dataset.manifest.source, dataset.counts()],
        "templates": [[t.id, t.aspects.key(), t.text, t.answer] for t in templates],
        "teacher": teacher.fingerprint(), "mix": sorted((mix or {}).items()), "split": split, "seed": seed,
        "max": settings.max_examples, "reps": settings.examples_per_target, "shard": settings.shard_size,
        "render": settings.render.key(),
    }
    if settings.notes is not None:  # only when set: builds made before notes existed keep their fingerprint
        parts["notes"] = settings.notes.key
    if settings.order is not None:
        parts["order"] = settings.order.key
    if settings.prior is not None:
        parts["prior"] = settings.prior.key
    if settings.negatives is not None:
        parts["negatives"] = settings.negatives.fingerprint
    if settings.targets != "all" and split == "train":
        parts["targets"] = settings.targets
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _ShardBuilder:
    """Builds the examples of one shard: collect teacher requests, ask once, render."""

    def __init__(self, dataset: Dataset, templates: TemplateLibrary, teacher: Teacher, seqs: list[np.ndarray],
                 split: str, settings: BuildSettings) -> None:
        self.dataset, self.templates, self.teacher, self.seqs = dataset, templates, teacher, seqs
        self.split, self.settings = split, settings
        self.renderer = Renderer(dataset, templates, teacher, settings.render)
        self.titles = [str(t) for t in dataset.titles]
        self.item_ids = [str(i) for i in dataset.item_ids]
        self.user_ids = [str(u) for u in dataset.user_ids]

    def requests_for(self, template: Template, user: int, target: int, history: np.ndarray) -> dict[str, TeacherRequest]:
        uid = self.user_ids[user]
        out = {}
        if template.needs("preference") or template.answer_form is AnswerForm.PREFERENCE:
            out["preference"] = TeacherRequest("preference", uid, history=tuple(int(i) for i in history))
        if template.aspects.intention is not Intention.NONE:
            kind = "vague_intention" if template.aspects.intention is Intention.VAGUE else "specific_intention"
            out["intention"] = TeacherRequest(kind, uid, item=target)
        return out

    def build(self, plan: Plan, lo: int, hi: int, rng: random.Random) -> list[dict]:
        hist_len = self.settings.render.history_items
        jobs = []
        wanted: dict[TeacherRequest, None] = {}
        for j in range(lo, hi):
            user, pos = int(plan.users[j]), int(plan.positions[j])
            template = self.templates.templates[int(plan.templates[j])]
            seq = self.seqs[user]
            history = seq[max(0, pos - hist_len):pos]
            target = int(seq[pos])
            reqs = self.requests_for(template, user, target, history)
            wanted.update(dict.fromkeys(reqs.values()))
            jobs.append((j, user, target, history, template, reqs))
        asked = list(wanted)
        answers: dict[TeacherRequest, TeacherAnswer] = dict(zip(asked, self.teacher.answer(asked), strict=True))
        pools = self.hard_pools(plan, lo, hi)
        records = []
        for (j, user, target, history, template, reqs), pool in zip(jobs, pools, strict=True):
            texts = {name: answers[r] for name, r in reqs.items()}
            record = self.example(template, user, target, history, texts, rng, pool).to_record()
            if self.listwise(template):
                record["candidate_labels"] = "letters"  # training reads the answer as a choice
            if self.budget is not None:
                record["render"] = self.budget  # the model records the prompt budget it was tuned with
            if template.aspects.task is TaskForm.RERANKING and self.collaborative:
                record["collaborative"] = list(self.collaborative)  # the model records what it was tuned with
            records.append({"id": f"{self.split}-{j}", **record})
        return records

    @property
    def budget(self) -> dict[str, int | str] | None:
        """The prompt budget of these instructions when it is not the default one (records then
        carry it, so older instruction folders and default builds stay byte for byte as they were)."""
        budget = self.settings.render.budget()
        return budget if budget != RenderSettings().budget() else None

    @property
    def collaborative(self) -> tuple[str, ...]:
        """The first-stage input of reranking instructions: `notes`, `order` and/or `prior`."""
        return tuple(n for n, s in (("notes", self.settings.notes), ("order", self.settings.order),
                                    ("prior", self.settings.prior)) if s is not None)

    def listwise(self, template: Template) -> bool:
        """Whether this template's examples are listwise: letter-labelled candidates, letter answer."""
        return (self.settings.render.candidate_labels == "letters" and template.aspects.task is TaskForm.RERANKING
                and template.answer_form is AnswerForm.TITLE)

    def hard_pools(self, plan: Plan, lo: int, hi: int) -> list[np.ndarray | None]:
        """Per example of the shard, the first stage's favourites its hard negatives come from
        (`settings.negatives`), for the whole sequence before the target, as `hard:` test
        candidates are; None everywhere without hard negatives."""
        hard = self.settings.negatives
        pools: list[np.ndarray | None] = [None] * (hi - lo)
        if hard is None:
            return pools
        drawn = (TaskForm.RERANKING, TaskForm.PAIRWISE, TaskForm.POINTWISE)  # the tasks with negatives
        rows = [j for j in range(lo, hi) if self.templates.templates[int(plan.templates[j])].aspects.task in drawn]
        users = plan.users[rows].astype(np.int64)
        seqs = [self.seqs[int(u)] for u in users]
        befores = [seq[:int(p)] for seq, p in zip(seqs, plan.positions[rows], strict=True)]
        excludes = [self.excluded(int(u), int(seq[int(p)])) for u, seq, p in zip(users, seqs, plan.positions[rows], strict=True)]
        for j, pool in zip(rows, hard.favourites(befores, users, excludes), strict=True):
            pools[j - lo] = pool
        return pools

    def excluded(self, user: int, target: int) -> set[int]:
        """Items no negative of this example may be: the user's whole training sequence and the target."""
        return set(self.seqs[user].tolist()) | {target}

    def negatives(self, k: int, pool: np.ndarray | None, exclude: set[int], rng: random.Random) -> list[int]:
        """`k` negatives for one example: uniform, or partly from its hard `pool` (`hard_pools`)."""
        hard = self.settings.negatives
        if pool is None or hard is None:
            return sample_negatives(len(self.titles), k, exclude, rng)
        return hard.draw(len(self.titles), k, pool, exclude, rng)

    def example(self, template: Template, user: int, target: int, history: np.ndarray,
                texts: dict[str, TeacherAnswer], rng: random.Random, pool: np.ndarray | None = None) -> Example:
        """One example; `pool`: the first stage's favourites its hard negatives come from (None: uniform)."""
        titles = self.titles
        exclude = self.excluded(user, target)
        task, form = template.aspects.task, template.answer_form
        preference = texts["preference"].text if "preference" in texts else None
        intention = texts["intention"].text if "intention" in texts else None
        candidates: list[int] = []
        target_index, item_text, pair = -1, None, None
        yes = True
        if task is TaskForm.RERANKING:
            candidates = [target, *self.negatives(self.settings.render.n_candidates - 1, pool, exclude, rng)]
            rng.shuffle(candidates)
            if self.settings.order is not None:
                order = self.settings.order.orders([history], np.asarray([candidates]), np.asarray([user]))[0]
                candidates = [candidates[int(j)] for j in order]
            target_index = candidates.index(target)
        elif task is TaskForm.PAIRWISE:
            candidates = [target, self.negatives(1, pool, exclude, rng)[0]]
            rng.shuffle(candidates)
            target_index = candidates.index(target)
            pair = (titles[candidates[0]], titles[candidates[1]])
        elif task is TaskForm.POINTWISE:
            yes = rng.random() < 0.5
            shown = target if yes else self.negatives(1, pool, exclude, rng)[0]
            candidates, target_index = [shown], (0 if yes else -1)
            item_text = titles[shown]
        elif form is AnswerForm.QUERY and "item" in template.slots:
            item_text = titles[target]
        notes = prior = None
        if self.settings.notes is not None and task is TaskForm.RERANKING:
            notes = self.settings.notes([history], np.asarray([candidates]), np.asarray([user]))[0]
        if self.settings.prior is not None and task is TaskForm.RERANKING:
            prior = self.settings.prior.prior([history], np.asarray([candidates]), np.asarray([user]))[0]
        text = self.renderer.fill(
            template, history=[titles[i] for i in history], preference=preference,
            intention=intention if form is not AnswerForm.QUERY else None,
            candidates=[titles[i] for i in candidates], item=item_text, pair=pair, notes=notes,
            history_items=[int(i) for i in history], candidate_items=candidates,
        )
        if form is AnswerForm.YES_NO:
            answer = "Yes" if yes else "No"
        elif form is AnswerForm.QUERY:
            answer = intention or ""
        elif form is AnswerForm.PREFERENCE:
            answer = preference or ""
        elif form is AnswerForm.REASONING:
            answer = (template.answer or "").format(target_title=titles[target], preference=preference or "",
                                                     intention=intention or "")
        elif self.listwise(template):
            answer = candidate_label(target_index, "letters")
        else:
            answer = titles[target]
        instruction = Instruction(text, template.aspects, template.id, tuple(titles[i] for i in candidates),
                                  tuple(self.item_ids[i] for i in candidates))
        meta = {
            "family": template.family,
            "history": [self.item_ids[int(i)] for i in history],
            "preference_source": texts["preference"].source if "preference" in texts else None,
            "intention_source": texts["intention"].source if "intention" in texts else None,
        }
        if prior is not None:
            meta["prior"] = [round(float(z), 6) for z in prior]
        return Example(instruction, answer, form, self.user_ids[user], self.item_ids[target], self.split,
                       target_index, meta)


def shard_stats(records: list[dict]) -> dict[str, dict[str, int]]:
    stats: dict[str, Counter] = {k: Counter() for k in ("template", "aspects", "group", "answer_form", "task",
                                                         "family", "teacher_source")}
    for rec in records:
        stats["template"][rec["template_id"]] += 1
        stats["aspects"][rec["aspects"]] += 1
        stats["answer_form"][rec["answer_form"]] += 1
        stats["task"][rec["task"]] += 1
        stats["family"][rec["meta"]["family"]] += 1
        for key in ("preference_source", "intention_source"):
            if rec["meta"][key]:
                stats["teacher_source"][f"{key.split('_')[0]}:{rec['meta'][key]}"] += 1
    return {k: dict(v) for k, v in stats.items() if k != "group"}


def build_instructions(dataset: Dataset, templates: TemplateLibrary, teacher: Teacher,
                       mix: Mapping[str, float] | None, split: SplitName, seed: int, out: str | Path,
                       settings: BuildSettings | None = None, overwrite: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> dict:
    """Write instruction data for `split` to folder `out`; return the stats (also in stats.json).

    `teacher` must already be fitted on `dataset`. Rerunning with the same arguments resumes an
    interrupted build; different arguments on a folder holding another build are an error unless
    `overwrite`. `progress(done, total)` is called after every shard.
    """
    settings = settings or BuildSettings()
    if split not in ("train", "valid", "test"):
        raise InstructRecError(f"split {split!r} must be train, valid or test.")
    out = Path(out)
    fp = fingerprint(dataset, templates, teacher, mix, split, seed, settings)
    with distributed.main_first():  # rank 0 checks and prepares the folder; the others find it ready
        seqs, plan = _prepare(dataset, templates, mix, split, seed, out, settings, fp, overwrite)
    n, size = len(plan.users), settings.shard_size
    n_shards = max(1, -(-n // size))
    builder = _ShardBuilder(dataset, templates, teacher, seqs, split, settings)
    for shard in range(n_shards):
        if not distributed.owns(shard):
            continue
        path, meta_path = out / f"shard-{shard:05d}.jsonl", out / f".shard-{shard:05d}.stats.json"
        if path.exists() and meta_path.exists():
            if progress:
                progress(shard + 1, n_shards)
            continue
        rng = random.Random(seed * 1_000_003 + shard)
        lo, hi = shard * size, min(n, (shard + 1) * size)
        records = builder.build(plan, lo, hi, rng)
        atomic_write(meta_path, json.dumps(shard_stats(records)))
        atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        log.debug("wrote %s (%d examples)", path, len(records))
        if progress:
            progress(shard + 1, n_shards)
    failures = sum(distributed.all_gather_object(int(getattr(teacher, "failures", 0))))  # waits for every rank
    totals: dict[str, Counter] = {}
    for shard in range(n_shards):
        for key, counts in json.loads((out / f".shard-{shard:05d}.stats.json").read_text()).items():
            totals.setdefault(key, Counter()).update(counts)
    fallbacks = sum(c for k, c in totals.get("teacher_source", {}).items() if ":fallback" in k)
    stats = {"split": split, "seed": seed, "examples": n, "shards": n_shards, "teacher": teacher.name,
             "teacher_fallbacks": fallbacks, "teacher_failures": failures,
             **{f"per_{k}": dict(sorted(v.items())) for k, v in totals.items()}}
    if distributed.is_main():
        atomic_write(out / STATS, json.dumps(stats, indent=2, sort_keys=True) + "\n")
        atomic_write(out / STATE, json.dumps({"fingerprint": fp, "split": split, "seed": seed, "examples": n,
                                              "shards": n_shards, "complete": True}, indent=2))
    return stats


def _prepare(dataset: Dataset, templates: TemplateLibrary, mix: Mapping[str, float] | None, split: SplitName,
             seed: int, out: Path, settings: BuildSettings, fp: str,
             overwrite: bool) -> tuple[list[np.ndarray], Plan]:
    """Check `out` (another build there is an error unless `overwrite`), write the build state, plan."""
    state_path = out / STATE
    remove_stale(state_path)  # a build killed while writing its state leaves only that temporary
    if out.exists() and any(out.iterdir()):
        state = json.loads(state_path.read_text()) if state_path.exists() else None
        if state is None or (state.get("fingerprint") != fp and not overwrite):
            raise InstructRecError(
                f"{out} already holds {'other files' if state is None else 'a build with other settings'}; "
                "choose another --out" + ("" if state is None else " or pass --overwrite") + ".")
        if state.get("fingerprint") != fp:
            for old in list(out.glob("shard-*.jsonl")) + list(out.glob(".shard-*")) + [out / STATS]:
                old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    seqs, plan = make_plan(dataset, templates, mix, split, seed, settings)
    n, size = len(plan.users), settings.shard_size
    n_shards = max(1, -(-n // size))
    if distributed.is_main():
        atomic_write(state_path, json.dumps({"fingerprint": fp, "split": split, "seed": seed, "examples": n,
                                             "shards": n_shards, "complete": False}, indent=2))
    return seqs, plan
