"""Several processes on one or more machines: rank, world size, sharding and gathering.

`torchrun` and `accelerate launch` start one process per device and tell each its place in the
environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`); without them a run is one process and every
function here is a no-op. The process group is created on first use (through
`accelerate.PartialState`: gloo on CPU, NCCL on GPUs), so a one-process run never imports it.

How work is shared: units of work (evaluation batches, fusion-fitting batches, instruction shards)
are numbered 0..n-1 and rank r does the units k with `k % world_size == r` (`owns`). Each unit is
computed exactly as a one-process run computes it (the same inputs in the same call), and the
results are gathered on every rank in unit order (`map_batches`, `gather_units`), so a sharded
run gives the same numbers as a one-process run. Only rank 0 writes reports (`is_main`);
`main_first` lets rank 0 create a shared file (a fitted retriever, a converted model) while the
others wait and then read it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_state: Any = None


def world_size() -> int:
    """Number of processes of this run (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its machine (its GPU index)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if world_size() > 1 else 0


def is_main() -> bool:
    """Whether this process writes reports and shared files (rank 0)."""
    return rank() == 0


def owns(unit: int) -> bool:
    """Whether this rank computes unit `unit` (units are dealt out round-robin)."""
    return unit % world_size() == rank()


def device() -> str:
    """The device of this rank's models: `cuda:LOCAL_RANK` where CUDA is available (and the launch
    did not ask for CPU, as `accelerate launch --cpu` does), else `cpu`."""
    import torch

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if use_cpu or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{local_rank()}"


def _init() -> None:
    """Join the process group (once), and leave it when the process ends."""
    global _state
    if _state is None:
        import atexit

        from accelerate import PartialState

        _state = PartialState()
        atexit.register(_leave)


def _leave() -> None:
    """Destroy the process group before the interpreter exits: a rank that leaves with the gloo
    group alive can abort in its C++ teardown ("terminate called without an active exception",
    SIGABRT), which fails the whole launch although every rank finished its work."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank got here."""
    if world_size() > 1:
        _init()
        import torch.distributed as dist

        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order, on every rank (picklable objects)."""
    if world_size() == 1:
        return [obj]
    _init()
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_units(mine: dict[int, T], n: int) -> list[T]:
    """Every rank's `{unit: result}` merged into one list in unit order, on every rank."""
    merged: dict[int, T] = {}
    for part in all_gather_object(mine):
        merged.update(part)
    missing = sorted(set(range(n)) - set(merged))
    if missing:
        raise RuntimeError(f"units {missing[:5]} were computed by no rank (world size {world_size()})")
    return [merged[k] for k in range(n)]


def map_batches(fn: Callable[[int], T], n: int) -> list[T]:
    """`[fn(0), ..., fn(n - 1)]` on every rank, each `fn(k)` computed by the rank that owns unit k."""
    if world_size() == 1:
        return [fn(k) for k in range(n)]
    return gather_units({k: fn(k) for k in range(n) if owns(k)}, n)


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fits and saves a shared model); the others run it once
    rank 0 is done (and find what it saved)."""
    if world_size() == 1:
        yield
        return
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()
