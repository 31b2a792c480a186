"""`instructrec quickstart` (the README's main job: the built-in recipe on the embedded default data)
and `instructrec run RECIPE` (any recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from instructrec import distributed
from instructrec.cli.common import console
from instructrec.errors import InstructRecError
from instructrec.pipeline import QuickstartSettings, run_quickstart, tiny
from instructrec.settings_docs import default, doc

Q = QuickstartSettings
_COLUMNS = ("HR@1", "HR@5", "NDCG@5", "MRR")


def _one_process(command: str) -> None:
    """Recipes run in one process: under a launcher every rank would compute and write every stage."""
    if distributed.world_size() > 1:
        raise InstructRecError(f"`instructrec {command}` runs in one process; launch `evaluate`, `instructions "
                               "build` or `train` under torchrun / accelerate launch instead.")


def quickstart(
    out: Annotated[Path, typer.Option(help=doc(Q, "out"))] = default(Q, "out"),
    data: Annotated[str, typer.Option(help=doc(Q, "data"))] = default(Q, "data"),
    model: Annotated[str, typer.Option(help=doc(Q, "model"))] = default(Q, "model"),
    steps: Annotated[int, typer.Option(help=doc(Q, "steps"))] = default(Q, "steps"),
    batch_size: Annotated[int, typer.Option(help=doc(Q, "batch_size"))] = default(Q, "batch_size"),
    users: Annotated[int, typer.Option(help=doc(Q, "users"))] = default(Q, "users"),
    valid_users: Annotated[int, typer.Option(help=doc(Q, "valid_users"))] = default(Q, "valid_users"),
    negatives: Annotated[int, typer.Option(help=doc(Q, "negatives"))] = default(Q, "negatives"),
    seed: Annotated[int, typer.Option(help=doc(Q, "seed"))] = default(Q, "seed"),
    sasrec_epochs: Annotated[int, typer.Option(help=doc(Q, "sasrec_epochs"))] = default(Q, "sasrec_epochs"),
    sasrec_minutes: Annotated[float, typer.Option(help=doc(Q, "sasrec_minutes"))] = default(Q, "sasrec_minutes"),
    tiny_run: Annotated[bool, typer.Option("--tiny", help="Smoke test: tiny random model, 20 users, 8 steps.")] = False,
) -> None:
    """Prepare data, build instructions, LoRA-tune the LLM, fit SASRec, popularity and BM25, evaluate
    them all on the same users and candidates (1 true + 9 random), and save a servable recommender.

    Runs the built-in recipe `builtin:quickstart` (`instructrec run builtin:quickstart` is the same
    job without these flags). Stages already complete in --out are reused, so an interrupted run
    resumes.
    """
    _one_process("quickstart")
    settings = QuickstartSettings(out, data, model, steps, batch_size, users, valid_users, negatives, seed,
                                  sasrec_epochs, sasrec_minutes)
    if tiny_run:
        settings = tiny(settings)
    summary = run_quickstart(settings, say=lambda msg: console.print(f"[bold cyan]>[/] {msg}"))
    print_summary(summary, f"InstructRec quickstart ({settings.users} test users, 1 true + {settings.negatives} random)")


def run_cmd(
    recipe: Annotated[str, typer.Argument(help="A recipe YAML file (e.g. benchmarks/recipes/games-table6.yaml) "
                                               "or builtin:quickstart.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default runs/<recipe name>).")] = None,
    experiments: Annotated[str | None, typer.Option(
        help="Comma-separated experiments to run (default: all; the recommender is saved only when all run).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe value as PATH=VALUE (repeatable; `*` for every list item), "
                      "e.g. --set experiments.*.users=300 --set models.tuned.train.max_steps=60.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the recipe and print it resolved; run nothing.")] = False,
) -> None:
    """Run an experiment recipe: every stage keyed by the hash of its settings, reused when it matches,
    so a killed run resumes and a changed setting re-runs only what depends on it."""
    _one_process("run")
    import json

    from instructrec.experiments.recipe import load_recipe, parse_overrides
    from instructrec.experiments.runner import run_recipe

    spec = load_recipe(recipe, parse_overrides(set_ or []))
    if check:
        console.print_json(json.dumps(spec.to_dict()))
        return
    names = [e for e in (experiments or "").split(",") if e] or None
    summary = run_recipe(spec, out, names, say=lambda msg: console.print(f"[bold cyan]>[/] {msg}"))
    print_summary(summary, f"recipe {spec.name}")


def print_summary(summary: dict[str, Any], title: str) -> None:
    """One table per experiment, sized for an 80-column terminal; the reports hold every metric."""
    console.print(f"[bold]{title}[/]")
    by_exp: dict[str, list[dict[str, Any]]] = {}
    for row in summary["results"]:
        by_exp.setdefault(row["experiment"], []).append(row)
    for exp, rows in by_exp.items():
        table = Table(title=f"{exp}: {rows[0]['task']}, {rows[0]['candidates']}, {rows[0]['users']} users",
                      title_justify="left")
        table.add_column("method", no_wrap=True, max_width=30)
        for m in _COLUMNS:
            table.add_column(m, justify="right", no_wrap=True)
        for row in rows:
            hr1 = f"{row['HR@1']:.3f}±{row['HR@1_ci']:.3f}" if row.get("HR@1_ci") is not None else f"{row.get('HR@1', float('nan')):.3f}"
            table.add_row(row["method"], hr1, *(f"{row.get(m, float('nan')):.3f}" for m in _COLUMNS[1:]))
        console.print(table, width=min(console.width, 80))
        for p in summary["reports"][exp]["paired"][:3]:
            d = p.get("HR@1")
            if d:
                console.print(f"  paired HR@1 {p['a']} - {p['b']}: {d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
        console.print(f"  report: {summary['reports'][exp]['report']['markdown']}")
    computed = sum(1 for s in summary["stages"] if s["status"] == "computed")
    console.print(f"stages: {computed} computed, {len(summary['stages']) - computed} reused; seconds per stage kind: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in summary["stage_seconds"].items()))
    if summary.get("stage_peak_rss_mb"):
        console.print("peak memory per stage kind (GB): "
                      + ", ".join(f"{k} {v / 1024:.2f}" for k, v in summary["stage_peak_rss_mb"].items()))
    if summary.get("recommender"):
        rec = summary["recommender"]
        console.print(f"recommender saved in {rec} (fusion weights {summary['fusion_weights']})")
        console.print(f"serve it:  instructrec serve --model {rec}")
        console.print(f'ask it:    instructrec recommend --model {rec} --user 1 "a light comedy"')
        console.print(f"check it:  instructrec evaluate --recommender {rec} --method recommender --task seqrec "
                      f"--users {by_exp and next(iter(by_exp.values()))[0]['users']}")
    console.print(f"took {summary['seconds']:.0f} s")
