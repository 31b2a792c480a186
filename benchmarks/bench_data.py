"""Data-layer speed: Games load + split, and preparing a 1M-line Amazon 2018 review file.

Prints one JSON line per figure, each with a baseline measured in the same run:

- `games_load_split`: `load_recbole(../shared/data/amazon-games)` + `leave_one_out` (target < 3 s);
  baseline: a plain `pandas.read_csv` of the same test.inter file (no parsing of its sequences).
- `amazon2018_prepare_1m`: `instructrec data prepare --source amazon2018` on a generated gzip file
  of 1,000,000 review lines (5-core, written to Parquet; target < 30 s); baseline: `json.loads` of
  every line of the same file and nothing else.

Usage: nice -n 10 .venv/bin/python benchmarks/bench_data.py [--lines 1000000] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pandas as pd

from instructrec.data import leave_one_out
from instructrec.data.lines import OnError
from instructrec.data.loaders.recbole_atomic import load_recbole
from instructrec.data.prepare import Source, prepare

WORDS = ["great", "game", "fun", "play", "graphics", "story", "controller", "works", "fine", "price",
         "bought", "son", "love", "hours", "online", "multiplayer", "bad", "boring", "recommend",
         "level", "boss", "character", "music", "worth", "money", "buy", "console", "disc", "download",
         "update", "missions", "easy", "hard", "quality", "sound", "awesome"]


def generate_amazon2018(folder: Path, lines: int, seed: int = 0) -> Path:
    """A realistic `<Category>_5.json.gz` + `meta_<Category>.json.gz` pair: ~10 reviews per user,
    Zipf-like item popularity, review texts of 5-120 words, some HTML entities and duplicates."""
    rng = random.Random(seed)
    n_users, n_items = max(lines // 10, 10), max(lines // 25, 10)
    weights = [1.0 / (i + 10) for i in range(n_items)]
    items = rng.choices(range(n_items), weights=weights, k=lines)
    reviews = folder / "Bench_Games_5.json.gz"
    with gzip.open(reviews, "wb", compresslevel=1) as out:
        for i in range(lines):
            user = i % n_users if i < n_users * 5 else rng.randrange(n_users)
            text = " ".join(rng.choices(WORDS, k=rng.randint(5, 120)))
            record = {
                "overall": float(rng.randint(1, 5)), "verified": True,
                "reviewTime": "01 1, 2015", "reviewerID": f"A{user:012d}", "asin": f"B{items[i]:09d}",
                "reviewerName": "someone", "reviewText": text + (" &amp; more" if i % 50 == 0 else ""),
                "summary": " ".join(rng.choices(WORDS, k=4)),
                "unixReviewTime": 1_300_000_000 + rng.randrange(300_000_000),
            }
            out.write(orjson.dumps(record) + b"\n")
    with gzip.open(folder / "meta_Bench_Games.json.gz", "wb", compresslevel=1) as out:
        for j in range(n_items):
            record = {"asin": f"B{j:09d}", "title": f"Game {j} &amp; Friends", "category": ["Video Games", "PC"],
                      "description": ["A game.", "Fun."], "brand": "Studio", "price": f"${j % 60}.99"}
            out.write(orjson.dumps(record) + b"\n")
    return reviews


def timed(fn):
    """Wall seconds and result; the CPU seconds of the last call are kept in `timed.cpu`
    (on a shared machine wall time also counts other people's jobs)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    timed.cpu = time.process_time() - cpu
    return time.perf_counter() - start, result


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def bench_games(data: Path) -> None:
    games = data / "amazon-games"
    if not (games / "Games-6k.test.inter").exists():
        emit(figure="games_load_split", skipped=f"no Games data at {games}")
        return
    base, _ = timed(lambda: pd.read_csv(games / "Games-6k.test.inter", sep="\t", quoting=csv.QUOTE_NONE))

    def pandas_long() -> pd.DataFrame:
        """What a pandas user would write: read, split the sequences, one row per interaction."""
        frame = pd.read_csv(games / "Games-6k.test.inter", sep="\t", quoting=csv.QUOTE_NONE,
                            names=["user_id", "seq", "item_id"], header=0, dtype=str)
        frame["seq"] = (frame["seq"] + " " + frame["item_id"]).str.split()
        return frame.explode("seq")

    base2, _ = timed(pandas_long)
    base2_cpu = timed.cpu
    secs, split = timed(lambda: leave_one_out(load_recbole(games)))
    emit(figure="games_load_split", seconds=round(secs, 3), cpu_seconds=round(timed.cpu, 3),
         target_seconds=3.0, users=len(split),
         baseline="pandas.read_csv(test.inter)", baseline_seconds=round(base, 3), ratio=round(secs / base, 2),
         baseline2="read_csv + str.split + explode (no titles, no checks, no split)",
         baseline2_seconds=round(base2, 3), baseline2_cpu_seconds=round(base2_cpu, 3), ratio2=round(secs / base2, 2))


def bench_amazon(lines: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gen, reviews = timed(lambda: generate_amazon2018(folder, lines))

        def json_only() -> int:
            with gzip.open(reviews, "rb") as handle:
                return sum(1 for line in handle if json.loads(line))

        base, _ = timed(json_only)
        base_cpu = timed.cpu
        secs, ds = timed(lambda: prepare(Source.amazon2018, reviews, folder / "out", on_error=OnError.fail))
        emit(figure="amazon2018_prepare_1m", lines=lines, seconds=round(secs, 3),
             cpu_seconds=round(timed.cpu, 3), target_seconds=30.0,
             users=ds.n_users, items=ds.n_items, interactions=ds.n_interactions, reviews=len(ds.reviews),
             file_mb=round(os.path.getsize(reviews) / 1e6, 1), generate_seconds=round(gen, 1),
             baseline="json.loads per line (gzip)", baseline_seconds=round(base, 3),
             baseline_cpu_seconds=round(base_cpu, 3), ratio=round(secs / base, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    args = parser.parse_args(argv)
    bench_games(args.data)
    bench_amazon(args.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
