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
