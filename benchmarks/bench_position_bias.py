"""Position bias of the listwise head, and what averaging over candidate orders does about it.

On a saved candidate set (validation users of a recipe run: the test users stay untouched), the
listwise model ranks each user's candidates in the order given (`permutations=1`) and averaged
over P cyclic orders (`RerankSettings.permutations`). Prints one JSON line: how often the top-1
falls at each list position (an unbiased ranker follows the targets' positions, which are
uniform), HR@1 by the target's position, and HR@1 at 1 and P orders with their paired difference.

    .venv/bin/python benchmarks/bench_position_bias.py --run runs/games-table6 \
        --model runs/games-table6/models/tuned-listwise-<hash> \
        --candidates runs/games-table6/candidates/seqrec-random-valid-<hash>.npz --permutations 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    from instructrec.data.dataset import Dataset
    from instructrec.data.split import leave_one_out
    from instructrec.eval.candidate_sets import CandidateSet
    from instructrec.eval.metrics import mean_ci
    from instructrec.instructions.schema import Aspects
    from instructrec.model.backend import load_model
    from instructrec.model.listwise import make_scorer
    from instructrec.recommender.reranker import LLMScores, Query, Reranker, RerankSettings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a recipe run folder (its data/ stage is read)")
    ap.add_argument("--model", required=True, help="a listwise model folder")
    ap.add_argument("--candidates", type=Path, required=True, help="a saved candidate set (.npz), validation users")
    ap.add_argument("--permutations", type=int, default=3)
    ap.add_argument("--users", type=int, default=None, help="first N users of the set (default all)")
    a = ap.parse_args()

    dataset = Dataset.load(next(p for p in (a.run / "data").iterdir() if p.is_dir()))
    split = leave_one_out(dataset)
    cands = CandidateSet.load(a.candidates)
    if a.users:
        cands = cands.subset(np.arange(min(a.users, len(cands))))
    llm = LLMScores(make_scorer(load_model(a.model, device="cpu")))
    aspects = Aspects.parse("P1,I0,T3")
    queries = [Query(split.history(int(r), cands.stage), aspects, user=int(split.users[r])) for r in cands.rows]
    found = cands.target_pos >= 0
    hits, tops = {}, None
    for perms in (1, a.permutations):
        reranker = Reranker(dataset, llm, settings=RerankSettings(permutations=perms))
        scores = np.concatenate([np.stack([x.columns["llm"] for x in reranker.score_batch(
            queries[i:i + 16], cands.items[i:i + 16])]) for i in range(0, len(queries), 16)])
        top = scores.argmax(1)
        hits[perms] = ((top == cands.target_pos) & found).astype(float)
        if perms == 1:
            tops = top
    size = cands.size
    out = {
        "model": a.model, "candidates": str(a.candidates), "users": int(len(cands)),
        "top1_position_share": np.bincount(tops, minlength=size).round(0).astype(int).tolist(),
        "target_position_share": np.bincount(cands.target_pos[found], minlength=size).tolist(),
        "hr1_by_target_position": [round(float(hits[1][cands.target_pos == p].mean()), 3)
                                   if (cands.target_pos == p).any() else None for p in range(size)],
        "hr1": {str(p): round(float(h.mean()), 4) for p, h in hits.items()},
        f"paired_{a.permutations}_minus_1": {k: round(v, 4) for k, v in
                                             mean_ci(hits[a.permutations] - hits[1]).items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
