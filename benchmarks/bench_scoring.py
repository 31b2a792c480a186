"""Reranking latency on the default model: shared-prefix scoring vs naive per-candidate scoring.

One ~200-token instruction, 10 and 20 candidates. Prints one JSON line per figure: seconds for
both methods (median of interleaved repeats after a warm-up, in one process so machine load hits
both alike), their ratio, the lower bound that this CPU's measured matmul speed allows for the
FLOPs each method must do, and each method's peak RSS (each alone in a fresh process).

    nice -n 10 .venv/bin/python benchmarks/bench_scoring.py [--repeats 3]

`--quick` (under 3 minutes) prints one JSON line for 10 candidates: `rerank_10_s` (the default fast
path, median: the listwise head with the same user's previous request in the server's per-user
`PrefixCache`, so only the request, candidate list and answer hint are run), `naive_10_s` (naive
per-candidate scoring of the same instruction and candidates, median, same run, interleaved),
`speedup`, `matmul_lower_bound_s` (the fast path's matmul FLOPs, ~2 x params x tokens run, over this
CPU's fp32 GEMM rate measured in the same run with torch.matmul), and the same head without the
cache (`rerank_10_uncached_s`, `uncached_lower_bound_s`: a first request). `--head shared-prefix`
measures the paper's title head the same way (`HEADS`).

`--normalize-check N` instead measures zero-shot validation HR@1 of `sum` vs `mean` scores on N
Games users (validation target + 9 random negatives, last 20 history titles): the evidence for
the default normalisation.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

HISTORY = [
    "The Legend of Zelda: Breath of the Wild", "Super Mario Odyssey", "Mario Kart 8 Deluxe",
    "Forza Horizon 4", "Gran Turismo Sport", "Need for Speed: Hot Pursuit", "Halo 5: Guardians",
    "Gears of War 4", "FIFA 19", "NBA 2K19", "Madden NFL 19", "Red Dead Redemption 2",
    "Grand Theft Auto V", "The Witcher 3: Wild Hunt", "Dark Souls III", "Bloodborne",
    "Uncharted 4: A Thief's End", "The Last of Us Remastered", "God of War", "Spider-Man",
]
CANDIDATES = [
    "Dirt Rally 2.0", "Crash Team Racing Nitro-Fueled", "Tetris Effect", "Call of Duty: Black Ops 4",
    "Minecraft", "Overwatch", "Fortnite", "Rocket League", "Project CARS 2", "Burnout Paradise Remastered",
    "Assassin's Creed Odyssey", "Far Cry 5", "Battlefield V", "Destiny 2", "Monster Hunter: World",
    "Sekiro: Shadows Die Twice", "Horizon Zero Dawn", "Days Gone", "Death Stranding", "Ratchet & Clank",
]


def instruction() -> str:
    return (
        "You are a recommender for video games. The user has bought these games, oldest first: "
        + "; ".join(HISTORY)
        + ". The user now wants a fast racing game to play with friends on the weekend, something with "
        "good split-screen multiplayer. Which of the candidate games should be recommended to the user?"
    )


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def setup(n_cands: int):
    from instructrec.model import load_model
    from instructrec.model.scoring import CandidateScorer

    loaded = load_model("default", device="cpu")
    return loaded, CandidateScorer(loaded), instruction(), CANDIDATES[:n_cands]


def flops(loaded, scorer, ins: str, cands: list[str], variant: str) -> tuple[int, int]:
    """Matmul FLOPs each method must do (2 * weights * tokens, LM head where it is computed);
    attention-score FLOPs are left out (small at these lengths), so the bound is optimistic."""
    prompt_tokens = len(scorer.encoder.prompt_ids(ins))
    answer_tokens = [len(scorer.encoder.answer_ids(c)) for c in cands]
    if variant == "shared":  # prefix once (head at 1 position), candidates once (head where needed)
        tokens = prompt_tokens + sum(answer_tokens)
        head_positions = 1 + sum(a - 1 for a in answer_tokens)
    else:  # every candidate re-reads the prompt; the head runs at every position
        tokens = sum(prompt_tokens + a for a in answer_tokens)
        head_positions = tokens
    return matmul_flops(loaded, tokens, head_positions), prompt_tokens


def matmul_flops(loaded, tokens: int, head_positions: int) -> int:
    """2 * body weights * tokens plus the LM head at `head_positions`."""
    cfg = loaded.model.config
    embed = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in loaded.model.parameters()) - embed * (1 if cfg.tie_word_embeddings else 2)
    return 2 * body * tokens + 2 * cfg.hidden_size * cfg.vocab_size * head_positions


def scorer_fn(loaded, scorer, ins, cands, variant):
    from instructrec.model.scoring import naive_scores

    if variant == "shared":
        return lambda: scorer.score([ins], [cands])[0]
    return lambda: naive_scores(loaded, ins, cands)


def peak_memory(variant: str, n_cands: int) -> dict:
    """Run one variant alone in this (fresh) process; report its peak RSS."""
    loaded, scorer, ins, cands = setup(n_cands)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scorer_fn(loaded, scorer, ins, cands, variant)()
    return {"variant": variant, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_load_mb": base}


def latency(n_cands: int, repeats: int, gflops: float) -> dict:
    """Both methods in one process, interleaved, so machine load affects them alike."""
    loaded, scorer, ins, cands = setup(n_cands)
    fns = {v: scorer_fn(loaded, scorer, ins, cands, v) for v in ("shared", "naive")}
    for fn in fns.values():
        fn()  # warm-up (thread pools, allocator)
    times: dict[str, list[float]] = {"shared": [], "naive": []}
    for _ in range(repeats):
        for v, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[v].append(time.perf_counter() - start)
    shared_flops, prompt_tokens = flops(loaded, scorer, ins, cands, "shared")
    naive_flops, _ = flops(loaded, scorer, ins, cands, "naive")
    s, v = statistics.median(times["shared"]), statistics.median(times["naive"])
    return {"figure": "rerank_latency", "candidates": n_cands, "prompt_tokens": prompt_tokens,
            "shared_prefix_s": round(s, 3), "naive_s": round(v, 3), "speedup": round(v / s, 2),
            "target_speedup_at_20": 5.0, "shared_lower_bound_s": round(shared_flops / gflops / 1e9, 3),
            "naive_lower_bound_s": round(naive_flops / gflops / 1e9, 3),
            "shared_gflop": round(shared_flops / 1e9, 1), "naive_gflop": round(naive_flops / 1e9, 1)}


RerankFn = Callable[[str, Sequence[str]], Any]
"""`rerank(instruction, candidate_titles)` -> one score per candidate (what a ranking head computes)."""


@dataclass
class Head:
    """A ranking head as `--quick` measures it."""

    rerank: RerankFn
    prompt_tokens: Callable[[str, Sequence[str]], int]
    """Tokens of the prompt the head runs for an instruction and its candidates."""
    head_positions: Callable[[Sequence[str]], int]
    """Positions where the LM head is computed (1 for listwise; every non-last answer token for titles)."""
    extra_tokens: Callable[[Sequence[str]], int] = lambda cands: 0
    """Tokens run after the prompt (the titles of the shared-prefix head)."""
    cache: Any = None
    """The `PrefixCache` the head reads (the server's per-user cache), or None: every prompt run whole."""


def listwise_head(loaded: Any, cached: bool) -> Head:
    """The listwise head (`model.listwise`): the candidates listed under letters in the prompt, one
    forward, the letters' logits at the answer position. `cached`: the server's path for a known
    user, the `PrefixCache` holding the user's previous prompt, so only the tokens after the
    history (request, candidate list, answer hint) are run."""
    from instructrec.instructions.render import LISTWISE_ANSWER_HINT, RenderSettings, format_candidates
    from instructrec.model.listwise import ListwiseScorer
    from instructrec.model.scoring import PrefixCache

    scorer = ListwiseScorer(loaded, prefix_cache=PrefixCache(4) if cached else None)

    def text(ins: str, cands: Sequence[str]) -> str:
        return f"{ins}{format_candidates(list(cands), RenderSettings(), 'letters')}\n{LISTWISE_ANSWER_HINT}"

    return Head(lambda ins, cands: scorer.score([text(ins, cands)], [list(cands)])[0],
                lambda ins, cands: len(scorer.encoder.prompt_ids(text(ins, cands))), lambda cands: 1,
                cache=scorer.prefix_cache)


def shared_prefix_head(loaded: Any, cached: bool) -> Head:
    """The paper's title head: `CandidateScorer` (instruction once, candidates as one batch)."""
    from instructrec.model.scoring import CandidateScorer, PrefixCache

    scorer = CandidateScorer(loaded, prefix_cache=PrefixCache(4) if cached else None)
    answers = lambda cands: [len(scorer.encoder.answer_ids(c)) for c in cands]  # noqa: E731
    return Head(lambda ins, cands: scorer.score([ins], [list(cands)])[0],
                lambda ins, cands: len(scorer.encoder.prompt_ids(ins)),
                lambda cands: 1 + sum(a - 1 for a in answers(cands)), lambda cands: sum(answers(cands)),
                cache=scorer.prefix_cache)


HEADS: dict[str, Callable[[Any, bool], Head]] = {"listwise": listwise_head, "shared-prefix": shared_prefix_head}
"""Ranking heads `--quick` can measure (`--head`); the default, listwise, is what a tuned model serves."""


def earlier_request(ins: str) -> str:
    """The same user's previous request: the same history, another request text."""
    return ins.replace("a fast racing game to play with friends", "a calm puzzle game to play alone")


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quick(loaded: Any, head: str = "listwise", repeats: int = 3, n_cands: int = 10) -> dict[str, Any]:
    """The fast path (`head` with the same user's previous prompt in its `PrefixCache`, as a server
    serves a known user) vs the same head without the cache vs naive per-candidate scoring of the
    same instruction and candidates, interleaved in this process, each next to the matmul lower bound
    of its FLOPs at this CPU's GEMM rate measured in the same run."""
    from instructrec.model.scoring import naive_scores

    ins, cands = instruction(), CANDIDATES[:n_cands]
    fast, plain = HEADS[head](loaded, True), HEADS[head](loaded, False)
    cache = fast.cache
    gflops = matmul_gflops()
    for h in (fast, plain):  # warm-up: thread pools, allocator
        h.rerank(ins, cands[:2])
    naive_scores(loaded, ins, cands[:2])

    def cached_call() -> float:
        cache.clear()
        fast.rerank(earlier_request(ins), cands[::-1])  # the user's previous request, other order
        return _timed(lambda: fast.rerank(ins, cands))

    times: dict[str, list[float]] = {"fast": [], "plain": [], "naive": []}
    reused = []
    for _ in range(repeats):  # interleaved, so machine load hits all alike
        before = cache.tokens_reused
        times["fast"].append(cached_call())
        reused.append(cache.tokens_reused - before)
        times["plain"].append(_timed(lambda: plain.rerank(ins, cands)))
        times["naive"].append(_timed(lambda: naive_scores(loaded, ins, cands)))
    f, p, n = (statistics.median(times[k]) for k in ("fast", "plain", "naive"))
    tokens = fast.prompt_tokens(ins, cands)
    extra, positions = fast.extra_tokens(cands), fast.head_positions(cands)
    bound = lambda t: round(matmul_flops(loaded, t + extra, positions) / gflops / 1e9, 3)  # noqa: E731
    return {"figure": "rerank_quick", "head": head, "candidates": n_cands, "prompt_tokens": tokens,
            "cached_prompt_tokens_reused": min(reused),
            "rerank_10_s": round(f, 3), "naive_10_s": round(n, 3), "speedup": round(n / f, 2),
            "matmul_gflops": round(gflops, 1), "matmul_lower_bound_s": bound(tokens - min(reused)),
            "rerank_10_uncached_s": round(p, 3), "uncached_lower_bound_s": bound(tokens),
            "uncached_speedup": round(n / p, 2), "repeats": repeats,
            "times_s": {k: [round(t, 3) for t in v] for k, v in times.items()}}


def normalize_check(n_users: int, seed: int = 0) -> dict:
    """Zero-shot validation HR@1 with summed vs length-normalised log-likelihood on Games."""
    import html
    import os
    from pathlib import Path

    import numpy as np

    from instructrec.data import leave_one_out
    from instructrec.data.loaders.recbole_atomic import load_recbole
    from instructrec.model import load_model
    from instructrec.model.scoring import CandidateScorer

    root = Path(os.environ.get("INSTRUCTREC_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ds = load_recbole(root / "amazon-games")
    split = leave_one_out(ds)
    titles = [html.unescape(str(t)) for t in ds.titles]
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(split), size=n_users, replace=False)
    instructions, candidates, truth = [], [], []
    for row in rows:
        hist = split.history(int(row), "valid", max_len=20)
        target = split.target(int(row), "valid")
        seen = set(hist.tolist()) | {target}
        negs: list[int] = []
        while len(negs) < 9:
            j = int(rng.integers(len(titles)))
            if j not in seen and j not in negs:
                negs.append(j)
        cands = [target, *negs]
        rng.shuffle(cands)
        instructions.append("The user has bought these video games, oldest first: "
                            + "; ".join(titles[i] for i in hist)
                            + ". Which of the candidate games will the user buy next?")
        candidates.append([titles[i] for i in cands])
        truth.append(cands.index(target))
    scorer = CandidateScorer(load_model("default", device="cpu"))
    sums = scorer.score(instructions, candidates, normalize="sum")
    hits = {"sum": 0, "mean": 0}
    for s, cands, t in zip(sums, candidates, truth):
        lengths = np.array([len(scorer.encoder.answer_ids(c)) for c in cands])
        hits["sum"] += int(np.argmax(s) == t)
        hits["mean"] += int(np.argmax(s / lengths) == t)
    return {"figure": "zero_shot_valid_hr1_by_normalize", "users": n_users, "candidates": 10,
            "hr1_sum": hits["sum"] / n_users, "hr1_mean": hits["mean"] / n_users, "truncated": scorer.truncated}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--normalize-check", type=int, default=0, metavar="USERS")
    parser.add_argument("--quick", action="store_true", help="One JSON line for 10 candidates in under 3 minutes.")
    parser.add_argument("--head", choices=sorted(HEADS), default="listwise", help="The head --quick measures.")
    parser.add_argument("--variant", choices=["shared", "naive"])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared, oversubscribed 2-core box 2 threads ran 6-10x slower)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.normalize_check:
        print(json.dumps(normalize_check(args.normalize_check)))
        return
    if args.variant:
        print(json.dumps(peak_memory(args.variant, args.candidates)))
        return
    if args.quick:
        from instructrec.model import load_model

        loaded = load_model("default", device="cpu")
        print(json.dumps({**quick(loaded, args.head, args.repeats), "threads": args.threads}))
        return
    gflops = matmul_gflops()
    print(json.dumps({"figure": "cpu_matmul_gflops", "value": round(gflops, 1)}))
    for n in (10, 20):
        print(json.dumps(latency(n, args.repeats, gflops)), flush=True)
    mem = {}
    for variant in ("shared", "naive"):
        out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--variant", variant, "--candidates", "20"],
                             check=True, capture_output=True, text=True).stdout
        mem[variant] = json.loads(out.strip().splitlines()[-1])
    print(json.dumps({"figure": "rerank_peak_rss_mb", "candidates": 20,
                      "after_model_load": round(mem["shared"]["rss_after_load_mb"]),
                      "shared_prefix": round(mem["shared"]["peak_rss_mb"]), "naive": round(mem["naive"]["peak_rss_mb"])}))


if __name__ == "__main__":
    main()
