"""Shared fixtures. The tests never reach the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("INSTRUCTREC_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
GAMES_DIR = SHARED_DATA / "amazon-games"
REVIEWS_2023_DIR = SHARED_DATA / "amazon-reviews-2023-sample"


ONE_THREAD_DIRS = {"model", "training"}
"""Test folders whose tiny-model tests run on one torch thread: on a shared, oversubscribed CPU box
two threads ran several times slower (OpenMP barriers), and the tiny models gain nothing from a
second one."""


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread(request):
    if request.path.parent.name not in ONE_THREAD_DIRS:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def games_dir() -> Path:
    if not (GAMES_DIR / "Games-6k.test.inter").exists():
        pytest.skip(f"Games data not found at {GAMES_DIR} (set INSTRUCTREC_DATA_DIR to ../shared/data)")
    return GAMES_DIR


@pytest.fixture(scope="session")
def reviews_2023_dir() -> Path:
    if not (REVIEWS_2023_DIR / "training.jsonl").exists():
        pytest.skip(f"review sample not found at {REVIEWS_2023_DIR} (set INSTRUCTREC_DATA_DIR to ../shared/data)")
    return REVIEWS_2023_DIR


@pytest.fixture(scope="session")
def games(games_dir):
    from instructrec.data.loaders.recbole_atomic import load_recbole

    return load_recbole(games_dir)


@pytest.fixture(scope="session")
def movielens():
    from instructrec.data.loaders.movielens import load_movielens_100k

    return load_movielens_100k()


# ---- tiny models and instruction data for tests/model and tests/training (issue 4) ----------

TINY_GENRES = {
    "racing": ["Turbo Kart", "Speed Rally", "Drift King"],
    "puzzle": ["Block Drop", "Gem Match", "Word Maze"],
    "shooter": ["Star Blaster", "Gun Squad", "Laser Strike"],
    "sports": ["Goal Cup", "Slam Dunk", "Home Run"],
}


def tiny_instruction_records(n: int, split: str, seed: int, shift: int = 0) -> list[dict]:
    """Synthetic T3 records: the instruction names a genre; the answer is the candidate of it.
    `shift` > 0 relabels the genres (racing titles become `shift` genres later): a new task."""
    import random

    rng = random.Random(seed)
    genres = sorted(TINY_GENRES)
    titles = {g: TINY_GENRES[genres[(i - shift) % len(genres)]] for i, g in enumerate(genres)}
    everything = [t for g in genres for t in titles[g]]
    records = []
    for i in range(n):
        genre = rng.choice(genres)
        target = rng.choice(titles[genre])
        others = [rng.choice(titles[g]) for g in genres if g != genre]
        cands = [target, *others]
        rng.shuffle(cands)
        history = rng.sample(everything, 2)
        text = (
            f"The user has played {', '.join(history)}. Candidates: {'; '.join(cands)}. "
            f"The user now wants a {genre} game. Which {genre} candidate should be recommended?"
        )
        records.append({
            "instruction": text, "target": target, "candidates": cands, "target_index": cands.index(target),
            "split": split, "task": "T3", "user_id": f"u{i}", "item_id": target,
        })
    return records


@pytest.fixture(scope="session")
def tiny_instructions_dir(tmp_path_factory) -> Path:
    import json

    folder = tmp_path_factory.mktemp("instructions")
    with (folder / "examples.jsonl").open("w") as fh:
        for rec in tiny_instruction_records(96, "train", 0) + tiny_instruction_records(24, "valid", 1):
            fh.write(json.dumps(rec) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_shifted_instructions_dir(tmp_path_factory) -> Path:
    """The same instructions with genres relabelled: what a tuned model must adapt to."""
    import json

    folder = tmp_path_factory.mktemp("instructions-shifted")
    with (folder / "examples.jsonl").open("w") as fh:
        for rec in tiny_instruction_records(96, "train", 2, shift=1) + tiny_instruction_records(24, "valid", 3, shift=1):
            fh.write(json.dumps(rec) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer trained in a second on the tiny instruction vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [r["instruction"] + " " + r["target"] for r in tiny_instruction_records(200, "train", 7)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _save_tiny(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random 2-layer Llama saved as a model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    t = tiny_tokenizer
    cfg = LlamaConfig(
        vocab_size=len(t), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=t.bos_token_id,
        eos_token_id=t.eos_token_id, pad_token_id=t.pad_token_id, tie_word_embeddings=False,
    )
    return _save_tiny(LlamaForCausalLM(cfg), t, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random 2+2-layer T5 saved as a model folder."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    t = tiny_tokenizer
    cfg = T5Config(
        vocab_size=len(t), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2, num_heads=4,
        pad_token_id=t.pad_token_id, eos_token_id=t.eos_token_id, decoder_start_token_id=t.pad_token_id,
    )
    return _save_tiny(T5ForConditionalGeneration(cfg), t, tmp_path_factory.mktemp("tiny-t5"))


# -- candidates / eval (issue 5): a small data set whose sequences follow learnable patterns ---------
SYNTH_WORDS = ["dragon", "racing", "soccer", "zombie", "pirate", "ninja", "castle", "galaxy", "jungle", "robot", "wizard", "tennis", "golf", "boxing", "farming", "fishing", "sniper", "puzzle", "karate", "ocean", "desert", "volcano", "hockey", "skiing", "samurai", "cowboy", "alien", "knight", "detective", "circus"]


def make_synthetic_dataset(n_users: int = 500, n_themes: int = 30, per_theme: int = 10, seed: int = 0):
    """Users walk a theme's items in order (item j -> j+1, cyclic) with 10% random noise.

    Titles carry the theme word, so text retrievers can find the theme; popularity is near uniform.
    """
    import numpy as np
    import pandas as pd

    from instructrec.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    n_items = n_themes * per_theme
    items = pd.DataFrame({
        "item_id": [f"i{j}" for j in range(n_items)],
        "title": [f"{SYNTH_WORDS[j // per_theme]} adventure part {j % per_theme + 1}" for j in range(n_items)],
        "categories": [[] for _ in range(n_items)],
    })
    rows = []
    for u in range(n_users):
        theme = rng.integers(n_themes)
        pos = rng.integers(per_theme)
        for t in range(int(rng.integers(6, 12))):
            item = theme * per_theme + (pos + t) % per_theme
            if t and rng.random() < 0.1:
                item = int(rng.integers(n_items))
            rows.append((f"u{u}", f"i{item}", t))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).drop_duplicates(["user_id", "item_id"])
    return Dataset.from_frames(items, inter, source="synthetic")


@pytest.fixture(scope="session")
def synthetic_seq():
    return make_synthetic_dataset()
