"""A toy catalogue where a request's genre is learnable, and a tiny model tuned on it."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

GENRES = {
    "racing": ["Turbo Kart", "Speed Rally", "Drift King", "Nitro Road"],
    "puzzle": ["Block Drop", "Gem Match", "Word Maze", "Tile Twist"],
    "shooter": ["Star Blaster", "Gun Squad", "Laser Strike", "Sniper Ops"],
    "sports": ["Goal Cup", "Slam Dunk", "Home Run", "Tennis Ace"],
}


def make_toy_dataset(n_users: int = 240, seed: int = 0):
    """Each user plays the 4 games of one genre; titles end with the genre word, categories name it."""
    from instructrec.data.dataset import Dataset

    rng = random.Random(seed)
    items, rows = [], []
    for genre, names in GENRES.items():
        for name in names:
            items.append({"item_id": f"{genre[:2]}{len(items)}", "title": f"{name} {genre.title()}",
                          "categories": [genre.title()]})
    by_genre = {g: [it["item_id"] for it in items if it["categories"] == [g.title()]] for g in GENRES}
    for u in range(n_users):
        genre = rng.choice(sorted(GENRES))
        for t, item in enumerate(rng.sample(by_genre[genre], 4)):
            rows.append({"user_id": f"u{u}", "item_id": item, "timestamp": t})
    return Dataset.from_frames(pd.DataFrame(items), pd.DataFrame(rows), source="toy")


@pytest.fixture(scope="session")
def toy_dataset():
    return make_toy_dataset()


@pytest.fixture(scope="session")
def toy_parts(toy_dataset, tmp_path_factory):
    """(dataset, tiny base model folder, tuned adapter folder, fitted popularity, fitted bm25)."""
    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out
    from instructrec.instructions.builder import BuildSettings, build_instructions
    from instructrec.instructions.render import RenderSettings
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates
    from instructrec.model.tiny import build_tiny_causal
    from instructrec.training.trainer import TrainSettings, train

    root = tmp_path_factory.mktemp("toy")
    teacher = ExtractiveTeacher().fit(toy_dataset)
    # One template (the one a request without history is routed to) and 4 candidates keep the
    # task learnable by a 2-layer model in 200 steps.
    build_instructions(toy_dataset, load_templates().select(["int-rerank-specific"]), teacher, None, "train", 0,
                       root / "instr" / "train",
                       BuildSettings(max_examples=800, examples_per_target=4, render=RenderSettings(n_candidates=4)))
    corpus = [str(t) for t in toy_dataset.titles]
    for shard in sorted((root / "instr").rglob("shard-*.jsonl")):
        corpus += shard.read_text().splitlines()
    base = build_tiny_causal(root / "base", corpus, vocab_size=600, hidden=64, seed=0)
    adapter = root / "adapter"
    train(str(base), root / "instr", TrainSettings(out_dir=str(adapter), lora=False, max_steps=200, batch_size=16,
                                                   learning_rate=3e-3, eval_steps=1000, logging_steps=50, seed=0))
    split = leave_one_out(toy_dataset)
    pop = create_retriever("popularity").fit(toy_dataset, split)
    bm25 = create_retriever("bm25").fit(toy_dataset, split)
    return toy_dataset, Path(base), adapter, pop, bm25


def build_toy_task(toy_dataset, root: Path, render, sizes: dict[str, int]) -> Path:
    """The toy task's instructions (`int-rerank-specific`, rendered with `render`) for each split of
    `sizes` under `root/instr/SPLIT`, and a tiny causal base model built on their text; its folder."""
    from instructrec.instructions.builder import BuildSettings, build_instructions
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher
    from instructrec.instructions.templates import load_templates
    from instructrec.model.tiny import build_tiny_causal

    teacher = ExtractiveTeacher().fit(toy_dataset)
    library = load_templates().select(["int-rerank-specific"])
    for split, n in sizes.items():
        build_instructions(toy_dataset, library, teacher, None, split, 0, root / "instr" / split,
                           BuildSettings(max_examples=n, examples_per_target=4, render=render))
    corpus = [str(t) for t in toy_dataset.titles]
    for shard in sorted((root / "instr").rglob("shard-*.jsonl")):
        corpus += shard.read_text().splitlines()
    return Path(build_tiny_causal(root / "base", corpus, vocab_size=600, hidden=64, seed=0))


@pytest.fixture(scope="session")
def toy_task():
    """`build_toy_task`, for test modules (conftest is not imported by name)."""
    return build_toy_task


@pytest.fixture(scope="session")
def toy_listwise(toy_dataset, tmp_path_factory):
    """(listwise model folder, its instruction folder): the toy task with letter-labelled candidates
    and letter answers, a tiny model trained on it with the listwise loss. A 2-layer model does not
    learn to bind letters to titles in a test's budget (validation stays at chance), so the run
    memorises 64 training records (20 epochs): what the tests check is that the loss trains the
    letter logits, not that the toy generalises."""
    from instructrec.instructions.render import RenderSettings
    from instructrec.training.trainer import TrainSettings, train

    root = tmp_path_factory.mktemp("toy-listwise")
    base = build_toy_task(toy_dataset, root, RenderSettings(n_candidates=4, candidate_labels="letters"),
                          {"train": 64, "valid": 32})
    model = root / "model"
    train(str(base), root / "instr" / "train", TrainSettings(
        out_dir=str(model), lora=False, max_steps=80, batch_size=16, learning_rate=3e-3, eval_steps=40,
        max_eval_examples=32, logging_steps=10, seed=0), valid=root / "instr" / "valid")
    return model, root / "instr"
