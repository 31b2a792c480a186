"""Keep a run's per-user ranks, and pair methods across runs on the same users and candidates.

    # keep an experiment's per-user ranks (one row per method and user) next to the results
    .venv/bin/python benchmarks/per_user.py keep runs/games-table6/results/softmax-random \
        benchmarks/results/per-user/softmax-random-p1i0.parquet
    # paired difference of method A (this run) and method B (a kept earlier run), by user row
    .venv/bin/python benchmarks/per_user.py pair \
        benchmarks/results/per-user/softmax-random-p1i0.parquet:llm-softmax-960-p1i0 \
        benchmarks/results/per-user/softmax-random-960.parquet:llm-softmax-960

A run's checkout (its `runs/` folder) goes with its machine; the kept parquet lets a later run on
the same seeded users be paired with it (an LLM adapter costs an hour of this CPU to retrain).
`pair` refuses two methods scored on different candidate draws (`candidates` differ) and, with
`--check METHOD`, a control present in both files (e.g. popularity) whose per-user ranks must be
identical: that proves the users and candidates are the same draw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from instructrec.eval.metrics import paired_difference
from instructrec.experiments.runner import load_result
from instructrec.experiments.stages import FILE_RECORD_SUFFIX

METRICS = ("HR@1", "HR@3", "HR@5", "NDCG@3", "NDCG@5", "MRR")


def keep(results_dir: Path, out: Path) -> pd.DataFrame:
    """One row per (method, user) of every finished method result in `results_dir`: each
    `<method>-<hash>.json` with its stage record beside it (a result without one was cut short)."""
    frames = []
    for record in sorted(results_dir.glob(f"*.json{FILE_RECORD_SUFFIX}")):
        path = record.with_name(record.name.removesuffix(FILE_RECORD_SUFFIX))
        res = load_result(path)
        frame = pd.DataFrame({"method": res.method, "task": res.task, "candidates": res.candidates,
                              "row": res.rows, "rank": res.ranks})
        for name in METRICS:
            if name in res.per_user:
                frame[name] = res.per_user[name]
        frames.append(frame)
    if not frames:
        raise SystemExit(f"no method results (*.json) in {results_dir}")
    table = pd.concat(frames, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return table


def _method(table: pd.DataFrame, method: str, source: str) -> pd.DataFrame:
    part = table[table["method"] == method].sort_values("row")
    if part.empty:
        raise SystemExit(f"{source}: no method {method!r} (methods: {sorted(table['method'].unique())})")
    return part


def _split(spec: str) -> tuple[pd.DataFrame, str, str]:
    path, _, method = spec.rpartition(":")
    if not path:
        raise SystemExit(f"write FILE.parquet:METHOD, not {spec!r}")
    return pd.read_parquet(path), method, path


def pair(a_spec: str, b_spec: str, check: str | None = None) -> dict:
    """Paired mean difference A - B per metric with 95% CIs, over the user rows both have."""
    (ta, ma, pa), (tb, mb, pb) = _split(a_spec), _split(b_spec)
    a, b = _method(ta, ma, pa), _method(tb, mb, pb)
    if set(a["candidates"]) != set(b["candidates"]):
        raise SystemExit(f"different candidate draws: {set(a['candidates'])} vs {set(b['candidates'])}")
    if check is not None:
        ca, cb = _method(ta, check, pa), _method(tb, check, pb)
        same = np.array_equal(ca["row"].to_numpy(), cb["row"].to_numpy()) and np.array_equal(
            ca["rank"].to_numpy(), cb["rank"].to_numpy())
        if not same:
            raise SystemExit(f"{check!r} ranks differ between the two files: not the same users and candidates")
    metrics = [m for m in METRICS if m in a and m in b]
    diff = paired_difference({m: a[m].to_numpy() for m in metrics}, {m: b[m].to_numpy() for m in metrics},
                             a["row"].to_numpy(), b["row"].to_numpy())
    return {"a": a_spec, "b": b_spec, "check": check, "users": int(diff[metrics[0]]["n"]),
            "diff": {m: {k: round(v, 4) for k, v in d.items()} for m, d in diff.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keep", help="an experiment's per-user ranks as one parquet file")
    k.add_argument("results_dir", type=Path, help="runs/<recipe>/results/<experiment>")
    k.add_argument("out", type=Path)
    p = sub.add_parser("pair", help="paired difference of two methods, each FILE.parquet:METHOD")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--check", help="a control method in both files whose ranks must be identical (e.g. popularity)")
    args = ap.parse_args()
    if args.command == "keep":
        table = keep(args.results_dir, args.out)
        print(f"{args.out}: {table['method'].nunique()} methods, {len(table)} rows")
    else:
        print(json.dumps(pair(args.a, args.b, args.check), indent=2))


if __name__ == "__main__":
    main()
