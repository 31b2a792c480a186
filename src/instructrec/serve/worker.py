"""Run recommender calls one at a time on a dedicated thread, with a bounded, fair queue.

Why one thread: the recommender holds a torch model, a tokenizer and Python caches (the
instruction's KV cache, lookup dicts) that are not safe to use from several threads at once, and
on CPU one forward pass already uses every core through torch's intra-op thread pool, so running
two at once only makes both slower. Requests therefore wait in line (an asyncio lock, first come
first served) while the event loop stays free to answer `/healthz`, title search and the web
page. The line is bounded: when `max_queue` calls are already waiting, new ones are refused at once
(HTTP 503) instead of piling up behind a slow model until clients time out; and a caller that has
gone away while waiting (a closed browser tab) is skipped instead of costing a model call.

`BatchWorker` puts a batching step in front of that thread: each time the thread is free it takes
every call waiting in line (first come first served, at most `max_batch`, after waiting up to
`wait_ms` for more to arrive) and hands them to one batch function, so that several users' requests
share the model's forward passes. The bound and the skipping of gone callers are the same.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


class QueueFull(Exception):
    """More than `max_queue` calls are waiting."""


class CallerGone(Exception):
    """The caller disconnected while waiting; the call was not made."""


def load_on_model_thread(loader: Callable[[], T], name: str = "model") -> tuple[T, ThreadPoolExecutor]:
    """`loader()` run on a new single thread, returned with that thread for `SerialWorker` to run
    the model on (errors of `loader` are raised here, the thread stopped).

    Why the model is loaded on the thread that runs it: torch's CPU thread pool (OpenMP) serves the
    first thread that runs parallel work best; on the 2-core box a recommender loaded on the main
    thread and called on another took 35 % longer per request than on the main thread (its small
    element-wise ops about 9x slower), and as fast once loaded on the calling thread itself
    (benchmarks/RESULTS.md, issue 12, fifth pass)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"instructrec-{name}")
    try:
        return executor.submit(loader).result(), executor
    except BaseException:
        executor.shutdown(wait=False)
        raise


class SerialWorker:
    """Runs blocking calls one at a time on its own thread; awaitable from the event loop."""

    def __init__(self, name: str, max_queue: int, executor: ThreadPoolExecutor | None = None) -> None:
        """`executor`: a single-thread executor to run on (e.g. the one `load_on_model_thread`
        loaded the model on); None: one is started on first use."""
        self.name = name
        self.max_queue = max_queue
        self._executor: ThreadPoolExecutor | None = executor
        self._lock: asyncio.Lock | None = None
        self._pending = 0  # only touched from the event loop thread

    @property
    def pending(self) -> int:
        """Calls running or waiting."""
        return self._pending

    async def run(self, fn: Callable[..., T], /, *args: object,
                  gone: Callable[[], Awaitable[bool]] | None = None, **kwargs: object) -> T:
        """Call `fn(*args, **kwargs)` on the worker thread once the calls before it are done.

        `gone`, when given, is asked just before the call; if it answers True the call is skipped
        and `CallerGone` raised.
        """
        if self._pending >= self.max_queue:
            raise QueueFull(f"{self._pending} requests are already waiting for the {self.name}")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"instructrec-{self.name}")
        if self._lock is None:
            self._lock = asyncio.Lock()
        self._pending += 1
        try:
            async with self._lock:
                if gone is not None and await gone():
                    raise CallerGone
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Wait for the running call to finish and stop the thread (a later `run` starts a new one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._lock = None


BatchFn = Callable[[Sequence[P]], Sequence["R | Exception"]]
"""Answers a batch of payloads in order; a payload's own failure is returned in its place."""


@dataclass
class _Waiting(Generic[P, R]):
    payload: P
    future: asyncio.Future[R]
    gone: Callable[[], Awaitable[bool]] | None


class BatchWorker(Generic[P, R]):
    """Collects waiting calls into batches for `batch_fn`, run one batch at a time on `worker`'s thread."""

    def __init__(self, worker: SerialWorker, batch_fn: BatchFn[P, R], max_batch: int, wait_ms: float) -> None:
        self.worker, self.batch_fn = worker, batch_fn
        self.max_batch, self.wait_s = max_batch, wait_ms / 1000
        self._queue: asyncio.Queue[_Waiting[P, R]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending = 0  # only touched from the event loop thread
        self.batch_sizes: list[int] = []
        """Sizes of the last batches run (most recent last, at most 100): how much batching happened."""

    @property
    def pending(self) -> int:
        """Calls running or waiting."""
        return self._pending

    async def run(self, payload: P, gone: Callable[[], Awaitable[bool]] | None = None) -> R:
        """The answer for `payload` once its batch has run; `QueueFull` when `max_queue` calls are
        waiting, `CallerGone` when `gone()` answered True just before its batch."""
        if self._pending >= self.worker.max_queue:
            raise QueueFull(f"{self._pending} requests are already waiting for the {self.worker.name}")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue()  # (again) on this event loop: a queue belongs to one loop
            self._task = loop.create_task(self._loop())
        assert self._queue is not None
        self._pending += 1
        try:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait(_Waiting(payload, future, gone))
            return await future
        finally:
            self._pending -= 1

    async def _take(self) -> list[_Waiting[P, R]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        while True:
            batch = await self._take()
            live = []
            for waiting in batch:
                if waiting.future.done():  # its request was cancelled
                    continue
                if waiting.gone is not None and await waiting.gone():
                    waiting.future.set_exception(CallerGone())
                    continue
                live.append(waiting)
            if not live:
                continue
            self.batch_sizes = [*self.batch_sizes[-99:], len(live)]
            try:
                answers: Sequence[Any] = await self.worker.run(self.batch_fn, [w.payload for w in live])
            except Exception as exc:  # the batch function itself failed: every caller hears why
                answers = [exc] * len(live)
            if len(answers) != len(live):
                answers = [RuntimeError(f"the batch function answered {len(answers)} of {len(live)} calls")] * len(live)
            for waiting, answer in zip(live, answers, strict=True):
                if waiting.future.done():
                    continue
                if isinstance(answer, Exception):
                    waiting.future.set_exception(answer)
                else:
                    waiting.future.set_result(answer)

    def close(self) -> None:
        """Stop collecting (waiting callers are cancelled) and stop the worker's thread."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().future.cancel()
            self._queue = None
        self.worker.close()
