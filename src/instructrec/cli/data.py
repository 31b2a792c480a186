"""`instructrec data ...`: prepare datasets and show their statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from instructrec.cli.common import console, stats_table
from instructrec.data.dataset import Dataset
from instructrec.data.prepare import Source, prepare

app = typer.Typer(help="Prepare recommendation data sets and inspect them.", no_args_is_help=True)


@app.command("prepare")
def prepare_cmd(
    source: Annotated[Source, typer.Option(help="Input format.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (Parquet + manifest.json).")],
    path: Annotated[Path | None, typer.Option(help="Input folder or file (not needed for movielens).")] = None,
    min_user: Annotated[int, typer.Option(help="k-core: minimum interactions per user (0 = off).")] = 0,
    min_item: Annotated[int, typer.Option(help="k-core: minimum interactions per item (0 = off).")] = 0,
) -> None:
    """Read a data set in SOURCE format and save it as a clean dataset folder."""
    dataset = prepare(source, path, out, min_user=min_user, min_item=min_item)
    console.print(f"wrote {out}: {dataset!r}")


@app.command("stats")
def stats_cmd(folder: Annotated[Path, typer.Argument(help="A dataset folder written by `data prepare`.")]) -> None:
    """Users, items, interactions, sparsity, history lengths and text coverage of a dataset."""
    dataset = Dataset.load(folder)
    console.print(stats_table(f"{folder} ({dataset.manifest.source})", dataset.stats()))
