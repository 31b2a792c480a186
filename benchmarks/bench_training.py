"""Training throughput and peak memory: this project's setup vs a plain Trainer setup.

Both train the same LoRA adapter on the default model (SmolLM2-135M-Instruct) with the same
instruction records (lengths spread like InstructRec's: history of 3-20 titles), batch size and
steps. `ours`: dynamic padding + length-grouped batches + answer-only loss with the LM head
computed only at answer positions (`InstructionTrainer`). `plain`: `transformers.Trainer` with the
model's own loss (LM head on every position) and every batch padded to the maximum length.
Examples/s are measured after the first (warm-up) step; each variant runs in its own process so
its peak RSS is its own. Prints one JSON line per figure.

    nice -n 10 .venv/bin/python benchmarks/bench_training.py [--steps 5 --batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time

WORDS = ["Racing", "Legends", "Dragon", "Quest", "Soccer", "Star", "Galaxy", "Wars", "Puzzle", "Kingdom", "Ninja", "Warrior", "Castle", "Siege", "Ocean", "Odyssey", "Robot", "Arena", "Wizard", "Tower", "Tennis", "Pro", "Golf", "Tour", "Sniper", "Elite", "Karate", "Master", "Hockey", "Skiing"]


def records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    title = lambda: " ".join(rng.sample(WORDS, rng.randint(2, 4)))  # noqa: E731
    out = []
    for _ in range(n):
        history = [title() for _ in range(rng.randint(3, 20))]
        cands = [title() for _ in range(10)]
        target = rng.randrange(10)
        out.append({
            "instruction": f"The user has played, oldest first: {'; '.join(history)}. Which of these games "
                           f"should be recommended next: {'; '.join(cands)}?",
            "target": cands[target], "candidates": cands, "target_index": target, "split": "train",
        })
    return out


class StepTimer:
    """Wall time of the steps after the first."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                if state.global_step == 1:
                    timer.start = time.perf_counter()
                timer.end = time.perf_counter()

        self.callback = _Callback()
        self.start = self.end = 0.0


def run_variant(variant: str, steps: int, batch_size: int, max_prompt: int) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from instructrec.model import PromptEncoder, PromptSettings, load_model
    from instructrec.training.collate import InstructionCollator
    from instructrec.training.compat import sampling_args
    from instructrec.training.data import tokenize_records
    from instructrec.training.trainer import InstructionTrainer, TrainSettings, build_model

    torch.manual_seed(0)
    loaded = load_model("default", device="cpu", dtype="float32")
    prompt = PromptSettings(max_prompt_tokens=max_prompt, max_answer_tokens=32)
    settings = TrainSettings(out_dir="unused", lora=True, prompt=prompt)
    model = build_model(loaded, settings)
    enc = PromptEncoder(loaded.tokenizer, loaded.kind, prompt)
    feats = tokenize_records(records(steps * batch_size * 2, 0), enc)
    mean_len = sum(len(f["input_ids"]) for f in feats) / len(feats)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=2e-4,
            logging_steps=steps, save_strategy="no", report_to="none", remove_unused_columns=False, seed=0,
            disable_tqdm=True, **sampling_args(variant == "ours"),
        )
        common = dict(model=model, args=args, train_dataset=feats, callbacks=[timer.callback])
        if variant == "ours":
            trainer = InstructionTrainer(**common, data_collator=InstructionCollator(loaded.tokenizer.pad_token_id, "causal"),
                                         kind="causal")
        else:
            collator = InstructionCollator(loaded.tokenizer.pad_token_id, "causal", max_length=max_prompt + 32)
            trainer = Trainer(**common, data_collator=collator)
        trainer.train()
    examples = (steps - 1) * batch_size
    return {"variant": variant, "examples_per_s": examples / (timer.end - timer.start), "mean_tokens": mean_len,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-prompt", type=int, default=384)
    parser.add_argument("--variant", choices=["ours", "plain"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared, oversubscribed 2-core box 2 threads ran 6-10x slower)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.batch_size, args.max_prompt)))
        return
    res = {}
    for variant in ("ours", "plain"):
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--variant", variant, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--max-prompt", str(args.max_prompt)]
        res[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    ours, plain = res["ours"], res["plain"]
    print(json.dumps({
        "figure": "training_throughput", "model": "SmolLM2-135M-Instruct (LoRA)", "batch_size": args.batch_size,
        "padded_length_plain": args.max_prompt + 32, "mean_tokens": round(ours["mean_tokens"], 1),
        "ours_examples_per_s": round(ours["examples_per_s"], 3), "plain_examples_per_s": round(plain["examples_per_s"], 3),
        "speedup": round(ours["examples_per_s"] / plain["examples_per_s"], 2), "target_speedup": 1.5,
    }))
    print(json.dumps({"figure": "training_peak_rss_mb", "ours": round(ours["peak_rss_mb"]), "plain": round(plain["peak_rss_mb"])}))


if __name__ == "__main__":
    main()
