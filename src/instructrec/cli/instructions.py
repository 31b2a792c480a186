"""`instructrec instructions ...`: build instruction data, show samples, list templates."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from instructrec import distributed
from instructrec.cli.common import console, stats_table
from instructrec.errors import DataError, InstructRecError

app = typer.Typer(help="Build instruction data from a dataset and inspect it.", no_args_is_help=True)

TeacherName = Literal["extractive", "openai", "local"]


def load_dataset_arg(data: str):
    """A dataset folder (`data prepare` output), a RecBole atomic folder, or `movielens`."""
    from instructrec.data.dataset import MANIFEST, Dataset

    if data == "movielens":
        from instructrec.data.loaders.movielens import load_movielens_100k

        return load_movielens_100k()
    path = Path(data)
    if path.is_dir() and not (path / MANIFEST).exists() and any(path.glob("*.inter")):
        from instructrec.data.loaders.recbole_atomic import load_recbole

        return load_recbole(path)
    return Dataset.load(path)


def parse_mix(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    mix = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            mix[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise InstructRecError(f"--mix {item!r} must look like KEY=WEIGHT, e.g. 'T3=2' or 'P1,I0,T3=0.5'.")
    return mix


@app.command("build")
def build_cmd(
    data: Annotated[str, typer.Option(help="Dataset folder (`data prepare`), a RecBole atomic folder, or 'movielens'.")],
    out: Annotated[Path, typer.Option(help="Output folder: shard-*.jsonl, stats.json, build.json.")],
    teacher: Annotated[str, typer.Option(help="Who writes P2/I1/I2: extractive | openai | local.")] = "extractive",
    split: Annotated[str, typer.Option(help="train | valid | test (leave-one-out).")] = "train",
    seed: Annotated[int, typer.Option(help="Random seed (templates, negatives, candidate order).")] = 0,
    mix: Annotated[list[str] | None, typer.Option(help="Template weight KEY=W (id, aspects, group, T0-T3, family); repeatable.")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Cap on examples (deterministic subset).")] = None,
    per_target: Annotated[int, typer.Option(help="Templates drawn per (user, target item).")] = 1,
    candidates: Annotated[int, typer.Option(help="Candidates per reranking instruction.")] = 10,
    history: Annotated[int, typer.Option(help="Most recent history items shown.")] = 20,
    templates: Annotated[list[Path] | None, typer.Option(help="Extra template YAML file(s); repeatable.")] = None,
    only_templates: Annotated[bool, typer.Option(help="Use only the --templates files, not the built-in 39.")] = False,
    teacher_url: Annotated[str | None, typer.Option(help="openai: base URL ending in /v1 (else env).")] = None,
    teacher_model: Annotated[str | None, typer.Option(help="openai: model name; local: folder, .gguf or 'default'.")] = None,
    teacher_cache: Annotated[Path | None, typer.Option(help="LLM teachers: response cache (SQLite).")] = None,
    concurrency: Annotated[int, typer.Option(help="openai: requests in flight.")] = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace a different build already in --out.")] = False,
    shard_size: Annotated[int, typer.Option(
        help="Examples per shard file: the unit of resumption and of sharing work between processes.")] = 20_000,
    item_tokens: Annotated[bool, typer.Option(
        help="Follow each history and candidate title by its item's soft-token marker (train the model with "
             "`instructrec train --item-tokens RETRIEVER`).")] = False,
) -> None:
    """Build instruction data (resumable: rerun the same command after an interruption)."""
    from instructrec.instructions.builder import BuildSettings, build_instructions
    from instructrec.instructions.render import RenderSettings
    from instructrec.instructions.teachers import (
        ExtractiveTeacher,
        LocalTeacher,
        OpenAISettings,
        OpenAITeacher,
        default_cache_path,
    )
    from instructrec.instructions.templates import load_templates

    if split not in ("train", "valid", "test"):
        raise InstructRecError(f"--split {split!r} must be train, valid or test.")
    if teacher not in ("extractive", "openai", "local"):
        raise InstructRecError(f"--teacher {teacher!r} must be extractive, openai or local.")
    library = load_templates(*(templates or []), builtin=not only_templates)
    dataset = load_dataset_arg(data)
    cache = teacher_cache or default_cache_path()
    if teacher == "openai":
        overrides = {k: v for k, v in (("base_url", teacher_url), ("model", teacher_model)) if v}
        chosen = OpenAITeacher(OpenAISettings(concurrency=concurrency, **overrides), cache_path=cache)
    elif teacher == "local":
        from instructrec.model.backend import load_model

        with distributed.main_first():  # rank 0 converts `default` once; each rank uses its own device
            loaded = load_model(teacher_model or "default", kind="causal", device=distributed.device())
        chosen = LocalTeacher(loaded.model, loaded.tokenizer, cache_path=cache)
    else:
        chosen = ExtractiveTeacher()
    with console.status("fitting the teacher ..."):
        chosen.fit(dataset)
    if shard_size < 1:
        raise InstructRecError("--shard-size must be at least 1.")
    settings = BuildSettings(max_examples=max_examples, examples_per_target=per_target, shard_size=shard_size,
                             render=RenderSettings(history_items=history, n_candidates=candidates,
                                                   item_tokens=item_tokens))
    with Progress(TextColumn("[bold]building[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not distributed.is_main()) as bar:
        task = bar.add_task(f"{split} -> {out} (shards)", total=None)
        stats = build_instructions(dataset, library, chosen, parse_mix(mix), split, seed, out, settings,
                                   overwrite=overwrite,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if distributed.is_main():
        summary = {"examples": stats["examples"], "shards": stats["shards"], "teacher": stats["teacher"],
                   "teacher fallbacks": stats["teacher_fallbacks"], "teacher failures": stats["teacher_failures"]}
        console.print(stats_table(f"{out} ({split}, seed {seed})", summary))
        console.print(stats_table("per task form", stats.get("per_task", {})))
        console.print(stats_table("teacher sources", stats.get("per_teacher_source", {})))
    distributed.barrier()  # every rank leaves the process group together (see distributed._leave)


def read_records(folder: Path) -> list[dict]:
    shards = sorted(folder.glob("shard-*.jsonl"))
    if not shards:
        raise DataError(f"{folder} has no shard-*.jsonl files; build it with `instructrec instructions build`.")
    records = []
    for shard in shards:
        with shard.open(encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise DataError(f"{shard}:{lineno} is not valid JSON; rebuild that folder.") from None
    return records


@app.command("show")
def show_cmd(
    folder: Annotated[Path, typer.Argument(help="Output folder of `instructions build`.")],
    n: Annotated[int, typer.Option(help="Samples to show.")] = 5,
    template: Annotated[str | None, typer.Option(help="Only this template id.")] = None,
    seed: Annotated[int, typer.Option(help="Which samples.")] = 0,
) -> None:
    """Pretty-print sample examples, spread over templates."""
    records = read_records(folder)
    by_template: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if template is None or rec["template_id"] == template:
            by_template[rec["template_id"]].append(rec)
    if not by_template:
        raise InstructRecError(f"no examples of template {template!r} in {folder}.")
    rng = random.Random(seed)
    ids = sorted(by_template)
    rng.shuffle(ids)
    for i in range(n):
        recs = by_template[ids[i % len(ids)]]
        rec = recs[rng.randrange(len(recs))]
        body = f"{rec['instruction']}\n\n[bold green]target:[/] {rec['target']}"
        title = f"{rec['template_id']}  <{rec['aspects']}>  {rec['answer_form']}  user {rec['user_id']}"
        console.print(Panel(body, title=title, title_align="left", highlight=False))
    stats_path = folder / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        console.print(stats_table("examples per task form", stats.get("per_task", {})))


@app.command("templates")
def templates_cmd(
    templates: Annotated[list[Path] | None, typer.Option(help="Extra template YAML file(s) to validate and list.")] = None,
) -> None:
    """List (and validate) the template library."""
    from instructrec.instructions.templates import load_templates

    library = load_templates(*(templates or []))
    table = Table(title=f"{len(library)} templates")
    for col in ("id", "group", "aspects", "answer", "family", "source"):
        table.add_column(col)
    for t in library:
        table.add_row(t.id, t.group, t.aspects.key(), t.answer_form.value, t.family, t.source)
    console.print(table)
