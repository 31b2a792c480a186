"""Throughput on the progress bar."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class ThroughputCallback(TrainerCallback):
    """Adds examples/s since the start of this run to every log line (and the progress bar)."""

    def __init__(self, examples_per_step: int) -> None:
        self.examples_per_step = examples_per_step
        self.start: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.start = (time.perf_counter(), state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.start is None or logs is None or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.start[0]
        steps = state.global_step - self.start[1]
        if elapsed > 0 and steps > 0:
            logs["examples_per_s"] = round(steps * self.examples_per_step / elapsed, 3)
