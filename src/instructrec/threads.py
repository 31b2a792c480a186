"""Scoped torch CPU thread counts.

`torch.set_num_threads` is process-wide: a retriever that set it for its own work and left it
would leave every later model in the process (the LLM reranker after SASRec retrieval, in the
recommender, the server and the evaluation) on that many threads. Measured on the 2-core box:
LLM reranking ran at 2.5 s per 10-candidate instruction instead of 1.1 s after a SASRec call had
set one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None: unchanged), then restore the previous count."""
    if not n or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
