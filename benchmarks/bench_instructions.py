"""Instruction-data build speed: 252,000 instructions (the paper's volume) from the Games data with
the extractive teacher, all 39 templates (target < 60 s on the 2-core dev box).

Prints one JSON line per figure, each with a baseline measured in the same run:

- `build_252k_extractive`: `build_instructions(games, 39 templates, extractive, split=train,
  max_examples=252000)`; baseline `build_252k_history_rerank_only`: the same build with only the
  template `pref-rerank-history` (<P1,I0,T3>: history + 10 shuffled candidates, no teacher text),
  i.e. the floor set by planning, negative sampling, slot filling and writing JSONL. The ratio is
  what the teacher and the other 38 templates cost on top.
- `teacher_fit`: computing item facets for the 16,859 Games titles (once per build); baseline
  `load_games`: loading the Games data itself.

Usage: nice -n 10 .venv/bin/python benchmarks/bench_instructions.py [--examples 252000] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from instructrec.data.loaders.recbole_atomic import load_recbole
from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.teachers.extractive import ExtractiveTeacher
from instructrec.instructions.templates import load_templates

MACHINE = "2-core CPU dev box"


def _emit(figure: str, seconds: float, baseline: str, baseline_s: float, **extra) -> None:
    print(json.dumps({"figure": figure, "seconds": round(seconds, 2), "baseline": baseline,
                      "baseline_seconds": round(baseline_s, 2), "ratio": round(seconds / baseline_s, 2),
                      "machine": MACHINE, **extra}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=252_000)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    args = parser.parse_args()

    t0 = time.perf_counter()
    games = load_recbole(args.data / "amazon-games")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    teacher = ExtractiveTeacher().fit(games)
    fit_s = time.perf_counter() - t0
    _emit("teacher_fit", fit_s, "load_games", load_s, items=games.n_items)

    library = load_templates()
    settings = BuildSettings(max_examples=args.examples)
    work = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    try:
        t0 = time.perf_counter()
        base = build_instructions(games, library.select(["pref-rerank-history"]), teacher, None, "train", 0,
                                  work / "baseline", settings)
        base_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = build_instructions(games, library, teacher, None, "train", 0, work / "full", settings)
        full_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in (work / "full").glob("shard-*.jsonl")) / 2**20
        _emit("build_252k_extractive", full_s, "build_252k_history_rerank_only", base_s,
              examples=full["examples"], baseline_examples=base["examples"], templates=len(full["per_template"]),
              examples_per_s=round(full["examples"] / full_s), jsonl_mb=round(size_mb, 1),
              teacher_fallbacks=full["teacher_fallbacks"], target_s=60, meets_target=full_s < 60)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
