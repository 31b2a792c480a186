"""Shared machinery of LLM teachers: prompts, the response cache, cleaning and counted fallbacks.

A subclass implements `_generate(batch of chat messages) -> replies (None = failed)`. Everything
else is here: a request whose reply is cached is never sent again; a reply that fails or is
unusable is replaced by the extractive teacher's text for the same request, with source
`fallback:llm-<reason>`, and counted in `failures` (never dropped silently).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from instructrec.data.dataset import Dataset
from instructrec.instructions.cache import ResponseCache, request_key
from instructrec.instructions.teachers.base import TeacherAnswer, TeacherRequest
from instructrec.instructions.teachers.extractive import ExtractiveTeacher, leaks_title
from instructrec.instructions.teachers.prompts import build_messages, clean_reply

log = logging.getLogger(__name__)


class LLMTeacher:
    """Base class; see module docstring."""

    name = "llm"

    def __init__(self, cache_path: str | Path | None = None) -> None:
        self.cache = ResponseCache(cache_path)
        self.fallback = ExtractiveTeacher()
        self.failures = 0
        """Requests answered by the fallback because the LLM failed or wrote nothing usable."""
        self.failure_reasons: Counter[str] = Counter()
        self.calls = 0
        """Requests actually sent to the model (cache misses)."""
        self.pending_error: Exception | None = None
        """Set by `_generate` to stop the run after this chunk's replies are cached."""
        self.chunk_size = 32
        """Requests handed to `_generate` at once (and cached together)."""
        self._titles: list[str] = []
        self._categories: list[list[str]] = []

    def _params(self) -> dict:
        """Generation parameters that change replies (part of the cache key)."""
        raise NotImplementedError

    def _generate(self, batch: list[list[dict[str, str]]]) -> list[str | None]:
        raise NotImplementedError

    def fit(self, dataset: Dataset) -> LLMTeacher:
        self.fallback.fit(dataset)
        self._titles = [str(t) for t in dataset.titles]
        self._categories = [list(c) for c in dataset.items["categories"]]
        return self

    def fingerprint(self) -> str:
        return f"{self.name}:{request_key(self._params())[:16]}"

    def answer(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]:
        filled = [r if r.kind != "vague_intention" or r.review is not None
                  else TeacherRequest(r.kind, r.user_id, r.item, r.history, self.fallback.review_of(r.user_id, r.item))
                  for r in requests]
        messages = [build_messages(r, self._titles, self._categories) for r in filled]
        keys = [request_key({"messages": m, **self._params()}) for m in messages]
        replies: list[str | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, rep in enumerate(replies) if rep is None]
        for lo in range(0, len(todo), self.chunk_size):
            part = todo[lo:lo + self.chunk_size]
            self.calls += len(part)
            fresh = self._generate([messages[i] for i in part])
            # cached per chunk, so work done before an error or a kill is never repeated
            self.cache.put_many((keys[i], rep) for i, rep in zip(part, fresh, strict=True) if rep is not None)
            for i, rep in zip(part, fresh, strict=True):
                replies[i] = rep
            if self.pending_error is not None:
                error, self.pending_error = self.pending_error, None
                raise error
        out = []
        for req, reply in zip(filled, replies, strict=True):
            text, reason = (clean_reply(reply), "unusable") if reply is not None else (None, "failed")
            if text and req.item >= 0 and leaks_title(text, self._titles[req.item]):
                text, reason = None, "title-leak"
            if text:
                out.append(TeacherAnswer(text, "llm"))
                continue
            self.failures += 1
            self.failure_reasons[reason] += 1
            fb = self.fallback.answer([req])[0]
            out.append(TeacherAnswer(fb.text, f"fallback:llm-{reason}"))
        return out
