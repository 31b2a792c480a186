"""One training step of the candidates-softmax objective: packed candidates vs shared KV caches.

The `softmax` objective (`TrainSettings.objective`) scores every candidate title of a list after
its prompt and takes the cross-entropy of the target. Two ways compute the same scores (equal
within 1e-4, `tests/model/test_scoring.py`):

- `cached` (the objective's first version): the prompts run once, then each candidate row takes an
  `index_select` copy of its prompt's KV cache and runs its title tokens
  (`model.scoring.prompt_forward` + `answer_logprobs`); the gradients flow back through the copies.
- `packed` (the objective now): each prompt and all its candidates in one row under a block
  attention mask (`model.scoring.packed_answer_logprobs`).

Both do one forward and backward pass of a LoRA adapter (r=16, the training default's modules) on
the default model (SmolLM2-135M-Instruct) over `--lists` title-short-like lists (10 history titles
and 10 candidates listed in the prompt, `--candidates` of them scored). Seconds per list: the
median of steps after a warm-up, the two variants interleaved step by step in one process (so
load on this shared box hits both alike); peak RSS: each variant alone in its own process.
Prints one JSON line.

    nice -n 10 .venv/bin/python benchmarks/bench_softmax_step.py [--lists 2 --candidates 4 --steps 3]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time

WORDS = ["Racing", "Legends", "Dragon", "Quest", "Soccer", "Star", "Galaxy", "Wars", "Puzzle", "Kingdom", "Ninja",
         "Warrior", "Castle", "Siege", "Ocean", "Odyssey", "Robot", "Arena", "Wizard", "Tower", "Tennis", "Pro"]


def lists(n: int, scored: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    title = lambda: " ".join(rng.sample(WORDS, rng.randint(3, 6)))  # noqa: E731
    out = []
    for _ in range(n):
        history, cands = [title() for _ in range(10)], [title() for _ in range(10)]
        text = (f"I have recently enjoyed these items, oldest first: {'; '.join(history)}. Which one of the following "
                f"10 candidates am I most likely to pick next? " + " ".join(f"{i + 1}. {c}" for i, c in enumerate(cands)))
        out.append((text, cands[:scored]))
    return out


def run_variant(variant: str, n_lists: int, scored: int, steps: int) -> dict:
    """`variant` (`cached`, `packed`, or `both`: interleaved step by step) timed over `steps` steps."""
    import torch
    import torch.nn.functional as F

    from instructrec.model import PromptEncoder, load_model
    from instructrec.model.scoring import (
        answer_logprobs,
        cache_keyword,
        packed_answer_logprobs,
        prompt_forward,
    )
    from instructrec.training.trainer import TrainSettings, build_model

    torch.manual_seed(0)
    loaded = load_model("default", device="cpu", dtype="float32")
    model = build_model(loaded, TrainSettings(out_dir="unused", lora=True))
    model.train()
    enc, pad = PromptEncoder(loaded.tokenizer, loaded.kind), loaded.tokenizer.pad_token_id
    batches = [lists(n_lists, scored, seed) for seed in range(steps + 1)]
    variants = ["cached", "packed"] if variant == "both" else [variant]
    times: dict[str, list[float]] = {v: [] for v in variants}
    tokens = 0.0
    for batch in batches:
        prompts = [enc.prompt_ids(text) for text, _ in batch]
        answers = [[enc.answer_ids(c) for c in cands] for _, cands in batch]
        tokens = sum(len(p) + sum(len(a) for a in c) for p, c in zip(prompts, answers, strict=True)) / n_lists
        for v in variants:
            start = time.perf_counter()
            if v == "packed":
                sums, counts = packed_answer_logprobs(model, prompts, answers, pad)
            else:
                kw = cache_keyword(model)
                out, mask = prompt_forward(model, prompts, pad, cache_kw=kw)
                rows = [(g, a) for g, c in enumerate(answers) for a in c]
                sums, counts = answer_logprobs(model, out, mask, rows, pad, per_pass=len(rows), cache_kw=kw)
            loss = F.cross_entropy((sums / counts).view(n_lists, scored), torch.zeros(n_lists, dtype=torch.long))
            loss.backward()
            model.zero_grad(set_to_none=True)
            times[v].append(time.perf_counter() - start)
    return {"variant": variant, "tokens_per_list": tokens,
            **{f"{v}_s_per_list": statistics.median(t[1:]) / n_lists for v, t in times.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lists", type=int, default=2, help="lists per forward pass")
    parser.add_argument("--candidates", type=int, default=4, help="candidates scored per list (target + negatives)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=["cached", "packed", "both"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.lists, args.candidates, args.steps)))
        return
    res = {}
    for variant in ("both", "cached", "packed"):
        cmd = [sys.executable, __file__, "--variant", variant, "--lists", str(args.lists), "--candidates",
               str(args.candidates), "--steps", str(args.steps), "--threads", str(args.threads)]
        res[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    both, cached, packed = res["both"], res["cached"], res["packed"]
    print(json.dumps({
        "figure": "softmax_objective_step", "model": "SmolLM2-135M-Instruct (LoRA r=16)", "lists": args.lists,
        "candidates_scored": args.candidates, "tokens_per_list": round(both["tokens_per_list"], 1),
        "threads": args.threads, "cached_s_per_list": round(both["cached_s_per_list"], 3),
        "packed_s_per_list": round(both["packed_s_per_list"], 3),
        "speedup": round(both["cached_s_per_list"] / both["packed_s_per_list"], 2),
        "cached_peak_rss_mb": round(cached["peak_rss_mb"]), "packed_peak_rss_mb": round(packed["peak_rss_mb"]),
    }))


if __name__ == "__main__":
    main()
