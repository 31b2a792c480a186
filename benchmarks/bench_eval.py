"""Cost of the evaluation harness itself (ranking, tie-breaking, metrics, CIs) at Games scale.

Prints one JSON line per figure; the baseline in the same run is a straightforward per-user Python
loop computing the same ranks and metrics (checked equal under pessimistic ties).

    nice -n 10 .venv/bin/python benchmarks/bench_eval.py --users 50546 --candidates 10
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from instructrec.eval.metrics import per_user_metrics, summarize, target_ranks


def naive(scores: np.ndarray, target_pos: np.ndarray) -> dict[str, float]:
    hr1 = ndcg5 = mrr = 0.0
    for row, t in zip(scores, target_pos):
        rank = 1 + sum(1 for j, s in enumerate(row) if j != t and s >= row[t])
        hr1 += rank <= 1
        ndcg5 += 1 / math.log2(rank + 1) if rank <= 5 else 0.0
        mrr += 1 / rank
    n = len(scores)
    return {"HR@1": hr1 / n, "NDCG@5": ndcg5 / n, "MRR": mrr / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50546)
    ap.add_argument("--candidates", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(args.users, args.candidates)), 2)  # rounding makes real ties
    target = rng.integers(0, args.candidates, size=args.users)
    t = time.perf_counter()
    ranks = target_ranks(scores, target, "pessimistic")
    summ = summarize(per_user_metrics(ranks))
    fast = time.perf_counter() - t
    t = time.perf_counter()
    ref = naive(scores, target)
    slow = time.perf_counter() - t
    assert all(abs(summ[k]["mean"] - v) < 1e-12 for k, v in ref.items()), (summ, ref)
    print(json.dumps({"figure": "ranks+metrics+CI", "users": args.users, "candidates": args.candidates,
                      "seconds": round(fast, 4), "baseline_python_loop_seconds": round(slow, 3),
                      "speedup": round(slow / fast, 1)}))
    t = time.perf_counter()
    target_ranks(scores, target, "random", seed=0)
    print(json.dumps({"figure": "ranks with seeded random ties", "users": args.users,
                      "seconds": round(time.perf_counter() - t, 4)}))


if __name__ == "__main__":
    main()
