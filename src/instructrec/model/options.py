"""Light names of the model code (no torch import), for the CLI and settings that only name them."""

from __future__ import annotations

from typing import Literal

Normalize = Literal["mean", "sum"]
DEFAULT_NORMALIZE: Normalize = "mean"
"""Chosen on validation: zero-shot SmolLM2-135M-Instruct on Games validation reaches HR@1 0.28 with
mean vs 0.17 with sum (60 users; DESIGN.md: 0.33 vs 0.18 on 100), see benchmarks/RESULTS.md."""
