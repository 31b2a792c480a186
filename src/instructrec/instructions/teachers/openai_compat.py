"""The `openai` teacher: any OpenAI-compatible `/v1/chat/completions` endpoint (OpenAI, vLLM,
llama.cpp server, Ollama) through httpx.

Requests run with bounded concurrency (a thread pool: httpx's sync client is thread-safe and the
work is network-bound); timeouts, connection errors, 429 and 5xx are retried with exponential
backoff (honouring Retry-After); a reply that is not the expected JSON counts as a failure. If
every request of a run of `max_consecutive_failures` fails, the endpoint is taken to be down and
a `TeacherError` says so instead of filling the data with fallbacks.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from instructrec.cache_dir import cache_dir
from instructrec.instructions.teachers.base import TeacherError
from instructrec.instructions.teachers.llm_base import LLMTeacher

log = logging.getLogger(__name__)


def default_cache_path() -> Path:
    """The response cache in instructrec's cache folder (`$INSTRUCTREC_CACHE`, see `cache_dir`)."""
    return cache_dir() / "teacher-cache.sqlite"


@dataclass(frozen=True)
class OpenAISettings:
    """Where and how to call the endpoint. Defaults come from the environment."""

    base_url: str = field(default_factory=lambda: os.environ.get("INSTRUCTREC_OPENAI_BASE_URL")
                          or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")
    """Endpoint root ending in /v1 (env INSTRUCTREC_OPENAI_BASE_URL or OPENAI_BASE_URL)."""
    model: str = field(default_factory=lambda: os.environ.get("INSTRUCTREC_OPENAI_MODEL") or "gpt-4o-mini")
    """Model name (env INSTRUCTREC_OPENAI_MODEL)."""
    api_key: str | None = field(default_factory=lambda: os.environ.get("INSTRUCTREC_OPENAI_API_KEY")
                                or os.environ.get("OPENAI_API_KEY"), repr=False)
    """Bearer key (env INSTRUCTREC_OPENAI_API_KEY or OPENAI_API_KEY); local servers need none."""
    temperature: float = 0.0
    """0 keeps reruns reproducible."""
    max_tokens: int = 96
    """Reply length cap."""
    timeout_s: float = 30.0
    """Per-request timeout."""
    max_retries: int = 4
    """Retries after the first try on timeouts, connection errors, 429, 5xx and malformed replies."""
    backoff_s: float = 1.0
    """First backoff; doubles per retry (capped at 30 s)."""
    concurrency: int = 8
    """Requests in flight at once."""
    max_consecutive_failures: int = 16
    """This many failures in a row with no success = endpoint down: stop with an error."""


class OpenAITeacher(LLMTeacher):
    """P2/I1/I2 written by a chat model that plays the user."""

    name = "openai"

    def __init__(self, settings: OpenAISettings | None = None, cache_path: str | Path | None = None) -> None:
        super().__init__(cache_path)
        self.settings = settings or OpenAISettings()
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        self._client = httpx.Client(base_url=self.settings.base_url.rstrip("/"), headers=headers,
                                    timeout=self.settings.timeout_s)
        self._consecutive = 0
        self._last_error = ""
        self.chunk_size = max(1, self.settings.concurrency * 4)

    def _params(self) -> dict:
        s = self.settings
        return {"model": s.model, "temperature": s.temperature, "max_tokens": s.max_tokens}

    def _call(self, messages: list[dict[str, str]]) -> str | None:
        s = self.settings
        payload = {"messages": messages, **self._params()}
        for attempt in range(s.max_retries + 1):
            wait = min(s.backoff_s * 2 ** attempt, 30.0)
            try:
                resp = self._client.post("/chat/completions", json=payload)
            except httpx.TimeoutException:
                self._last_error = "timeout"
            except httpx.TransportError as exc:
                self._last_error = f"connection error ({exc.__class__.__name__})"
            else:
                if resp.status_code in (401, 403):
                    raise TeacherError(f"{s.base_url} refused the key (HTTP {resp.status_code}); set "
                                       "INSTRUCTREC_OPENAI_API_KEY or OPENAI_API_KEY.")
                if resp.status_code == 404:
                    raise TeacherError(f"{s.base_url}/chat/completions not found (HTTP 404); the base URL "
                                       "must end in /v1 and the model must exist.")
                if resp.status_code == 429 or resp.status_code >= 500:
                    self._last_error = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("retry-after", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        wait = min(float(retry_after), 60.0)
                elif resp.status_code >= 400:
                    self._last_error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    return None
                else:
                    try:
                        content = resp.json()["choices"][0]["message"]["content"]
                        if isinstance(content, str):
                            return content
                        self._last_error = "reply without text content"
                    except (ValueError, KeyError, IndexError, TypeError):
                        self._last_error = "malformed JSON reply"
            if attempt < s.max_retries:
                log.debug("teacher request failed (%s); retry %d in %.1fs", self._last_error, attempt + 1, wait)
                time.sleep(wait)
        return None

    def _generate(self, batch: list[list[dict[str, str]]]) -> list[str | None]:
        s = self.settings
        with ThreadPoolExecutor(max_workers=max(1, s.concurrency)) as pool:
            replies = list(pool.map(self._call, batch))
        for reply in replies:
            self._consecutive = 0 if reply is not None else self._consecutive + 1
            if self._consecutive >= s.max_consecutive_failures:
                self.pending_error = TeacherError(  # raised by LLMTeacher.answer once replies are cached
                    f"teacher endpoint {s.base_url} failed {self._consecutive} requests in a row "
                    f"(last: {self._last_error}); start the server, check --teacher-url/--teacher-model, or "
                    "use --teacher extractive. Replies so far are cached, so a rerun resumes.")
                break
        return replies

    def close(self) -> None:
        self._client.close()
        self.cache.close()
