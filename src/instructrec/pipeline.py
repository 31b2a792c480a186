"""The end-to-end job behind `instructrec quickstart`: the built-in recipe
(`experiments/recipes/quickstart.yaml`) with the quickstart's flags applied, run by the recipe
runner: data -> instructions -> SASRec, popularity, BM25 -> LoRA tuning -> every method on the
same seeded users and candidates -> a saved `Recommender`.

Every stage is keyed by the hash of its settings, so an interrupted run resumes and a changed
flag recomputes only what depends on it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the recipe runner loads when a run starts: every CLI command imports this module
    from instructrec.experiments.recipe import Recipe

log = logging.getLogger(__name__)

RECIPE = "builtin:quickstart"

MICRO_BATCH = 1
"""Most training examples per forward pass in the quickstart: a step's examples run as accumulated
passes of this many (same examples per step, same loss normalisation over the step's answer
tokens), because the activations kept for the backward pass grow with the batch: 8 MovieLens
prompts of about 330 tokens in one fp32 pass held about 6 GB, most of the quickstart's 9.6 GB peak;
passes of 2 still held 2.7 GB against 1.9 GB for passes of 1, at the same training speed on a
2-core CPU (benchmarks/RESULTS.md, issue 12, fifth pass)."""


def micro_batches(examples_per_step: int) -> tuple[int, int]:
    """(examples per forward pass, passes per optimizer step) for `examples_per_step`."""
    micro = max(d for d in range(1, MICRO_BATCH + 1) if examples_per_step % d == 0)
    return micro, examples_per_step // micro


@dataclass
class QuickstartSettings:
    """Scale of the end-to-end run (each flag overrides one value of the built-in recipe)."""

    out: Path = Path("runs/quickstart")
    """Folder for everything the run writes (stages, reports, the recommender)."""
    data: str = "movielens"
    """`movielens` (embedded MovieLens-100K), a dataset folder (`data prepare`) or a RecBole folder."""
    model: str = "default"
    """Model to tune and to score zero-shot: `default` (bundled SmolLM2-135M-Instruct), `tiny`
    (a random tiny Llama), or a model folder."""
    steps: int = 30
    """LoRA optimizer steps (training instructions built: steps x batch size)."""
    batch_size: int = 8
    """Training examples per step (run as accumulated passes of one example, for memory)."""
    users: int = 60
    """Seeded test users evaluated per task."""
    valid_users: int = 30
    """Seeded validation users on which the fusion weight of each task is fitted."""
    negatives: int = 9
    """Random negatives per user (1 + 9 candidates, as in the paper)."""
    seed: int = 0
    """Seed of users, candidates, instructions, training and SASRec."""
    sasrec_epochs: int = 30
    """SASRec training epochs (early stopping on validation inside)."""
    sasrec_minutes: float = 2.0
    """Wall-clock budget of SASRec training (the best epoch so far is kept)."""


TINY = {"model": "tiny", "users": 20, "valid_users": 16, "steps": 8, "batch_size": 4, "sasrec_epochs": 2}
"""`--tiny`: a random tiny model and a few users: a smoke test of every stage in about a minute."""


def quickstart_overrides(s: QuickstartSettings) -> list[tuple[str, Any]]:
    """The recipe values the quickstart's flags set."""
    return [
        ("data", s.data), ("seed", s.seed),
        ("instructions.main.train_examples", s.steps * s.batch_size),
        ("instructions.main.valid_examples", max(32, s.valid_users)),
        ("retrievers.sasrec.epochs", s.sasrec_epochs), ("retrievers.sasrec.max_minutes", s.sasrec_minutes),
        ("models.tuned.base", s.model),
        ("models.tuned.train.max_steps", s.steps), ("models.tuned.train.eval_steps", s.steps),
        *zip(("models.tuned.train.batch_size", "models.tuned.train.grad_accum"), micro_batches(s.batch_size),
             strict=True),
        ("models.tuned.train.logging_steps", max(1, s.steps // 10)),
        ("experiments.*.users", s.users), ("experiments.*.valid_users", s.valid_users),
        ("experiments.*.candidates", f"random:{s.negatives}"),
        ("experiments.*.methods.2.method", f"llm:{s.model}"),
    ]


def quickstart_recipe(s: QuickstartSettings) -> Recipe:
    from instructrec.experiments.recipe import load_recipe

    return load_recipe(RECIPE, quickstart_overrides(s))


def run_quickstart(s: QuickstartSettings, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Run the quickstart recipe; returns the summary (also written to `out/summary.json`)."""
    from instructrec.experiments.runner import run_recipe

    return run_recipe(quickstart_recipe(s), s.out, say=say)


def tiny(s: QuickstartSettings) -> QuickstartSettings:
    return dataclasses.replace(s, **TINY)
