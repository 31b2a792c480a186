"""`instructrec quickstart`: the README's main job, end to end on the embedded default data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instructrec.cli.common import console
from instructrec.pipeline import TINY, QuickstartSettings, run_quickstart

_METRICS = ("HR@1", "HR@3", "HR@5", "NDCG@3", "NDCG@5", "MRR")


def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for everything the run writes.")] = Path("runs/quickstart"),
    data: Annotated[str, typer.Option(help="`movielens` (embedded), a dataset folder or a RecBole folder.")] = "movielens",
    model: Annotated[str, typer.Option(help="`default` (bundled SmolLM2-135M-Instruct), `tiny`, or a model path.")] = "default",
    steps: Annotated[int, typer.Option(help="LoRA training steps.")] = QuickstartSettings.steps,
    batch_size: Annotated[int, typer.Option(help="Training examples per step.")] = QuickstartSettings.batch_size,
    users: Annotated[int, typer.Option(help="Seeded test users evaluated per task.")] = QuickstartSettings.users,
    valid_users: Annotated[int, typer.Option(help="Validation users for the fusion weight.")] = QuickstartSettings.valid_users,
    seed: Annotated[int, typer.Option(help="Seed of users, candidates, instructions and training.")] = 0,
    tiny: Annotated[bool, typer.Option("--tiny", help="Smoke test: tiny random model, 20 users, 8 steps.")] = False,
) -> None:
    """Prepare data, build instructions, LoRA-tune the LLM, fit SASRec and popularity, evaluate them
    all on the same users and candidates (1 true + 9 random), and save a servable recommender.

    Stages already complete in --out are reused, so an interrupted run resumes.
    """
    settings = QuickstartSettings(out=out, data=data, model=model, steps=steps, batch_size=batch_size, users=users,
                                  valid_users=valid_users, seed=seed)
    if tiny:
        settings = dataclasses.replace(settings, **TINY)
    summary = run_quickstart(settings, say=lambda msg: console.print(f"[bold cyan]>[/] {msg}"))
    table = Table(title=f"InstructRec quickstart ({settings.users} test users, 1 true + {settings.negatives} random)")
    table.add_column("task")
    table.add_column("method", no_wrap=True)
    for m in _METRICS:
        table.add_column(m, justify="right")
    for row in summary["results"]:
        table.add_row(row["task"], row["method"], *(f"{row.get(m, float('nan')):.4f}" for m in _METRICS))
    console.print(table)
    rep = summary["report"]
    console.print(f"report: {rep['markdown']} and {rep['json']}; chart: {rep['chart']}")
    console.print(f"recommender saved in {summary['recommender']} (fusion weights {summary['fusion_weights']})")
    console.print(f"serve it:  instructrec serve --model {summary['recommender']}")
    console.print(f'ask it:    instructrec recommend --model {summary["recommender"]} --user 1 "a light comedy"')
    console.print(f"took {summary['seconds']:.0f} s")
