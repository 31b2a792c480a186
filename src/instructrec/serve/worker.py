"""Run recommender calls one at a time on a dedicated thread, with a bounded, fair queue.

Why one thread: the recommender holds a torch model, a tokenizer and Python caches (the
instruction's KV cache, lookup dicts) that are not safe to use from several threads at once, and
on CPU one forward pass already uses every core through torch's intra-op thread pool, so running
two at once only makes both slower. Requests therefore wait in line (an asyncio lock, first come
first served) while the event loop stays free to answer `/healthz`, title search and the web
page. The line is bounded: when `max_queue` calls are already waiting, new ones are refused at once
(HTTP 503) instead of piling up behind a slow model until clients time out; and a caller that has
gone away while waiting (a closed browser tab) is skipped instead of costing a model call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """More than `max_queue` calls are waiting."""


class CallerGone(Exception):
    """The caller disconnected while waiting; the call was not made."""


class SerialWorker:
    """Runs blocking calls one at a time on its own thread; awaitable from the event loop."""

    def __init__(self, name: str, max_queue: int) -> None:
        self.name = name
        self.max_queue = max_queue
        self._executor: ThreadPoolExecutor | None = None
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
