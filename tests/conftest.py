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


@pytest.fixture(scope="session")
def games_dir() -> Path:
    if not (GAMES_DIR / "Games-6k.test.inter").exists():
        pytest.skip(f"Games data not found at {GAMES_DIR} (set INSTRUCTREC_DATA_DIR to ../shared/data)")
    return GAMES_DIR


@pytest.fixture(scope="session")
def games(games_dir):
    from instructrec.data.loaders.recbole_atomic import load_recbole

    return load_recbole(games_dir)


@pytest.fixture(scope="session")
def movielens():
    from instructrec.data.loaders.movielens import load_movielens_100k

    return load_movielens_100k()


# -- candidates / eval (issue 5): a small data set whose sequences follow learnable patterns ---------
SYNTH_WORDS = (
    "dragon racing soccer zombie pirate ninja castle galaxy jungle robot wizard tennis golf boxing "
    "farming fishing sniper puzzle karate ocean desert volcano hockey skiing samurai cowboy alien "
    "knight detective circus"
).split()


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
