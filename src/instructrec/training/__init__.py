"""Instruction tuning: data loading, dynamic-padding collation and the Trainer setup."""

from instructrec.training.trainer import TrainResult, TrainSettings, train

__all__ = ["TrainResult", "TrainSettings", "train"]
