"""Instruction tuning: data loading, dynamic-padding collation and the Trainer setup.

`TrainSettings` and `TrainResult` import without transformers' Trainer (the CLI reads the
settings' docs at start-up); `train` loads it on first use.
"""

from typing import Any

from instructrec.training.settings import TrainResult, TrainSettings

__all__ = ["TrainResult", "TrainSettings", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from instructrec.training.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
