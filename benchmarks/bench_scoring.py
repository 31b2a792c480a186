"""Reranking latency on the default model: shared-prefix scoring vs naive per-candidate scoring.

One ~200-token instruction, 10 and 20 candidates. Prints one JSON line per figure: seconds for
both methods (median of repeats after a warm-up), their ratio, the lower bound that this CPU's
measured matmul speed allows for the FLOPs each method must do, and each variant's peak RSS
(every variant runs in its own process so peak memory is its own).

    nice -n 10 .venv/bin/python benchmarks/bench_scoring.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

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


def run_variant(variant: str, n_cands: int, repeats: int) -> dict:
    import torch

    from instructrec.model import load_model
    from instructrec.model.scoring import CandidateScorer, naive_scores

    torch.manual_seed(0)
    loaded = load_model("default", device="cpu")
    cfg = loaded.model.config
    scorer = CandidateScorer(loaded)
    ins, cands = instruction(), CANDIDATES[:n_cands]
    prompt_tokens = len(scorer.encoder.prompt_ids(ins))
    answer_tokens = [len(scorer.encoder.answer_ids(c)) for c in cands]

    def once():
        return scorer.score([ins], [cands])[0] if variant == "shared" else naive_scores(loaded, ins, cands)

    once()  # warm-up (thread pools, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    embed = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in loaded.model.parameters()) - embed * (1 if cfg.tie_word_embeddings else 2)
    head = 2 * cfg.hidden_size * cfg.vocab_size
    if variant == "shared":  # prefix once (head at 1 position), candidates once (head where needed)
        tokens = prompt_tokens + sum(answer_tokens)
        head_positions = 1 + sum(a - 1 for a in answer_tokens)
    else:  # every candidate re-reads the prompt; the head runs at every position
        tokens = sum(prompt_tokens + a for a in answer_tokens)
        head_positions = tokens
    flops = 2 * body * tokens + head * head_positions
    return {"variant": variant, "candidates": n_cands, "seconds": statistics.median(times), "flops": flops,
            "prompt_tokens": prompt_tokens, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=["shared", "naive"])
    parser.add_argument("--candidates", type=int, default=20)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.candidates, args.repeats)))
        return
    gflops = matmul_gflops()
    print(json.dumps({"figure": "cpu_matmul_gflops", "value": round(gflops, 1)}))
    for n in (10, 20):
        res = {}
        for variant in ("shared", "naive"):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--candidates", str(n),
                                  "--repeats", str(args.repeats if variant == "shared" else max(1, args.repeats - 1))],
                                 check=True, capture_output=True, text=True).stdout
            res[variant] = json.loads(out.strip().splitlines()[-1])
        s, v = res["shared"], res["naive"]
        print(json.dumps({
            "figure": "rerank_latency", "candidates": n, "prompt_tokens": s["prompt_tokens"],
            "shared_prefix_s": round(s["seconds"], 3), "naive_s": round(v["seconds"], 3),
            "speedup": round(v["seconds"] / s["seconds"], 2), "target_speedup_at_20": 5.0,
            "shared_lower_bound_s": round(s["flops"] / gflops / 1e9, 3),
            "naive_lower_bound_s": round(v["flops"] / gflops / 1e9, 3),
            "shared_peak_rss_mb": round(s["peak_rss_mb"]), "naive_peak_rss_mb": round(v["peak_rss_mb"]),
        }))


if __name__ == "__main__":
    main()
