"""`instructrec data ...`: download, prepare datasets and show their statistics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from instructrec.cli.common import console, stats_table
from instructrec.data.dataset import Dataset
from instructrec.data.download import Remote, download
from instructrec.data.lines import OnError
from instructrec.data.prepare import Source, prepare

app = typer.Typer(help="Download and prepare recommendation data sets and inspect them.", no_args_is_help=True)


@app.command("prepare")
def prepare_cmd(
    source: Annotated[Source, typer.Option(help="Input format.")],
    out: Annotated[Path, typer.Option(help="Dataset folder to write (Parquet + manifest.json).")],
    path: Annotated[Path | None, typer.Option(help="Input file or folder (see above).")] = None,
    meta: Annotated[Path | None, typer.Option(
        help="Amazon metadata file, when it is not next to the reviews under its usual name.")] = None,
    min_user: Annotated[int | None, typer.Option(
        help="k-core: minimum interactions per user (0 = off). Default: 5 for raw Amazon reviews, "
             "0 otherwise.")] = None,
    min_item: Annotated[int | None, typer.Option(
        help="k-core: minimum interactions per item (0 = off). Default as --min-user.")] = None,
    on_error: Annotated[OnError, typer.Option(
        help="Malformed input lines: fail at the first (with file:line), or skip and count them.")] = OnError.fail,
    dedup: Annotated[bool, typer.Option(help="Amazon: keep only each (user, item) pair's first review.")] = True,
    keep_untitled: Annotated[bool, typer.Option(
        help="Amazon: keep items without metadata/title (titled by their id) instead of dropping "
             "their interactions.")] = False,
) -> None:
    """Read a data set in SOURCE format and save it as a clean dataset folder.

    --path by source. movielens: nothing (the embedded MovieLens-100K) or an unpacked GroupLens
    ml-100k / ml-1m folder. recbole: a RecBole atomic folder. amazon2018: `<Category>_5.json.gz`
    (2014: `reviews_<Category>_5.json.gz`) with `meta_<Category>.json.gz` next to it, or their
    folder. amazon2023: `<Category>.jsonl[.gz]` with `meta_<Category>.jsonl[.gz]`, or their folder,
    or a sample-format folder (training/validation/test.jsonl).
    """
    start = time.perf_counter()
    dataset = prepare(source, path, out, min_user=min_user, min_item=min_item, meta=meta, on_error=on_error,
                      dedup=dedup, drop_untitled=not keep_untitled)
    lines = dataset.manifest.filters.get("lines", {})
    skipped = sum(lines.get("skipped_lines", {}).values()) if isinstance(lines, dict) else 0
    console.print(f"wrote {out} in {time.perf_counter() - start:.1f} s: {dataset!r}")
    if skipped:
        console.print(f"skipped {skipped:,} malformed line(s): {lines['skipped_lines']} "
                      f"(first: {lines['skipped_examples'][0]})", highlight=False)


@app.command("stats")
def stats_cmd(folder: Annotated[Path, typer.Argument(help="A dataset folder written by `data prepare`.")]) -> None:
    """Users, items, interactions, sparsity, history lengths and text coverage of a dataset."""
    dataset = Dataset.load(folder)
    console.print(stats_table(f"{folder} ({dataset.manifest.source})", dataset.stats()))


@app.command("download")
def download_cmd(
    name: Annotated[Remote, typer.Argument(help="Data set to fetch.")],
    out: Annotated[Path, typer.Option(help="Folder to put the files in.")],
    category: Annotated[str | None, typer.Option(
        help="amazon2018: the category, as in its file names (Video_Games, Books, ...).")] = None,
    mirror: Annotated[str | None, typer.Option(
        help="Base URL of a mirror with the same paths as the official host.")] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for a connection.")] = 5.0,
) -> None:
    """Fetch the official public files (GroupLens MovieLens, Amazon 2018 per-category 5-core + meta)."""
    paths = download(name, out, category=category, mirror=mirror, connect_timeout=connect_timeout)
    for p in paths:
        console.print(f"{p}")
    source = "movielens" if name is not Remote.amazon2018 else "amazon2018"
    console.print(f"next: instructrec data prepare --source {source} --path {out}"
                  f"{'/' + paths[0].stem if name is not Remote.amazon2018 else ''} --out DIR", highlight=False)
