"""Scoring speed of the retrievers in the paper's 1 + 9 protocol on Games (all test users).

Prints one JSON line per figure. Target: scoring all 50,546 Games test users in the 1 + 9 mode in
under 60 s for every classical retriever. The baseline in the same run is a naive loop that scores
one user at a time through `Retriever.recommend`-style single calls (on a sample, extrapolated),
so the ratio shows what batching buys.

    nice -n 10 .venv/bin/python benchmarks/bench_retrievers.py --data runs/games --models runs/models/games \
        --methods popularity,bpr,sasrec,gru4rec,bert4rec

Methods whose fitted model is missing under --models are fitted first (popularity, bpr, bm25) or skipped
(torch models and embedding: fit them with `instructrec retrieve fit`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from instructrec.candidates.base import create_retriever, load_retriever
from instructrec.data import Dataset, leave_one_out
from instructrec.eval.candidate_sets import random_candidates
from instructrec.eval.protocol import RetrieverScorer, evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="runs/games")
    ap.add_argument("--models", default="runs/models/games")
    ap.add_argument("--methods", default="popularity,bpr,sasrec,gru4rec,bert4rec")
    ap.add_argument("--naive-users", type=int, default=500, help="users scored one by one for the baseline")
    args = ap.parse_args()
    dataset = Dataset.load(args.data)
    split = leave_one_out(dataset)
    rows = np.arange(len(split))
    t = time.perf_counter()
    cands = random_candidates(dataset, split, rows, 9, seed=0)
    print(json.dumps({"figure": "build random:9 candidates", "users": len(rows),
                      "seconds": round(time.perf_counter() - t, 2)}), flush=True)
    for name in args.methods.split(","):
        path = Path(args.models) / name
        if (path / "settings.json").exists():
            model = load_retriever(path)
        elif name in ("popularity", "bpr", "bm25"):
            model = create_retriever(name).fit(dataset, split)
        else:
            print(json.dumps({"figure": f"score {name}", "skipped": f"no fitted model at {path}"}), flush=True)
            continue
        scorer = RetrieverScorer(model, split)
        t = time.perf_counter()
        res = evaluate(scorer, split, cands, progress=False)
        batched = time.perf_counter() - t
        sample = cands.subset(np.arange(min(args.naive_users, len(cands))))
        t = time.perf_counter()
        for i in range(len(sample)):
            row = sample.rows[i : i + 1]
            model.score([split.history(int(row[0]), "test")], sample.items[i : i + 1], users=split.users[row])
        naive = (time.perf_counter() - t) / len(sample) * len(cands)
        print(json.dumps({"figure": f"score {name} 1+9 all users", "users": len(cands),
                          "seconds": round(batched, 2), "baseline_one_by_one_seconds_extrapolated": round(naive, 1),
                          "speedup_vs_baseline": round(naive / batched, 1), "target_seconds": 60,
                          "meets_target": batched < 60, "HR@1": round(res.summary["HR@1"]["mean"], 4)}), flush=True)


if __name__ == "__main__":
    main()
