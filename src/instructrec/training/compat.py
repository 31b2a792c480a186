"""`TrainingArguments` keywords that differ between transformers versions."""

from __future__ import annotations

from typing import Any

from transformers import TrainingArguments


def sampling_args(group_by_length: bool) -> dict[str, Any]:
    """`train_sampling_strategy` in recent transformers, `group_by_length` in older ones."""
    fields = TrainingArguments.__dataclass_fields__
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def warmup_args(warmup: float) -> dict[str, Any]:
    """A fraction (< 1) or a step count; older transformers take fractions as `warmup_ratio`."""
    if warmup < 1 and "warmup_ratio" in TrainingArguments.__dataclass_fields__:
        return {"warmup_ratio": warmup}
    return {"warmup_steps": warmup if warmup < 1 else int(warmup)}
