"""Fixtures of the data tests: small input folders in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_formats import grid_reviews, invoke_cli, meta2018, review2018, write_lines


@pytest.fixture
def amazon2018_dir(tmp_path) -> Path:
    """`Toys_5.json.gz` + `meta_Toys.json.gz`: 6 users x 6 items plus a sparse user and item."""
    folder = tmp_path / "amazon2018"
    folder.mkdir()
    reviews = grid_reviews()
    reviews.append(review2018("SPARSE", "I0", 1_600_000_000))  # one review only: removed by 5-core
    reviews.append(review2018("U0", "RARE", 1_600_000_001))  # item reviewed once: removed by 5-core
    write_lines(folder / "Toys_5.json.gz", (json.dumps(r) for r in reviews))
    metas = [meta2018(f"I{i}", f"Toy {i} &amp; Co &#39;{i}&#39;  \n deluxe") for i in range(6)]
    metas.append(meta2018("RARE", "Rare toy"))
    write_lines(folder / "meta_Toys.json.gz", (json.dumps(m) for m in metas))
    return folder


@pytest.fixture
def cli():
    """The CLI, run in-process (see `data_formats.invoke_cli`); `run_cli` starts the real script."""
    return invoke_cli
