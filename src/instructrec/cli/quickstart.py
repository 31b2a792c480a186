"""`instructrec quickstart`: the README's main job on the embedded default data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from instructrec.cli.common import console, stats_table
from instructrec.data.prepare import Source, prepare


def quickstart(
    out: Annotated[Path, typer.Option(help="Folder for everything the quickstart writes.")] = Path("runs/quickstart"),
) -> None:
    """Prepare MovieLens-100K (from the recbole wheel) and print its statistics."""
    data_dir = out / "data"
    dataset = prepare(Source.movielens, None, data_dir)
    console.print(stats_table(f"MovieLens-100K -> {data_dir}", dataset.stats()))
