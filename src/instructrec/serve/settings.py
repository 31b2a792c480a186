"""Settings of the HTTP server: where it listens, who may call it from a browser, and its limits."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from instructrec.errors import InstructRecError


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on what one request may ask for; each breach is a 4xx answer naming the limit."""

    max_body_bytes: int = 64 * 1024
    """Largest accepted request body (HTTP 413 above it), checked before the JSON is parsed."""
    max_request_chars: int = 1000
    """Longest free-text request ("something relaxing to play with my daughter")."""
    max_history: int = 200
    """Most items in a `history`; the recommender itself reads only its most recent ones."""
    max_item_chars: int = 300
    """Longest single history entry, candidate id or user id (ids and titles are short)."""
    max_k: int = 50
    """Most items one answer may hold."""
    max_candidates: int = 500
    """Most explicit candidate item ids (each is scored by the LLM, so this bounds the work)."""
    max_query_chars: int = 200
    """Longest title-search query for `GET /v1/items`."""
    max_search_results: int = 50
    """Most results of one title search."""
    max_turns: int = 8
    """Most earlier turns a conversation may send back (each bounded like a request: its text by
    max_request_chars, the items it showed by max_k)."""
    max_queue: int = 64
    """Most recommend requests waiting for the model at once; more get HTTP 503 (try again later)."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise InstructRecError(f"serve limit {name} must be a positive integer, got {value!r}.")


@dataclass(frozen=True)
class ServeSettings:
    """How `instructrec serve` runs."""

    host: str = "127.0.0.1"
    """Interface to bind. Loopback by default: the server has no authentication."""
    port: int = 8000
    """TCP port."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API from other sites (none unless configured)."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    """Request limits."""
    max_batch: int = 8
    """Most waiting recommend requests the model scores together in one batched call (1: no batching)."""
    batch_wait_ms: float = 5.0
    """How long the model thread, once free, waits for more requests to join a batch."""
    prefix_cache_entries: int = 16
    """Recent prompts whose KV cache is kept (about 15 MB each for the default model) so that a
    user's next request reuses its chat header, task statement and history (0: off)."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InstructRecError(f"max_batch must be a positive integer, got {self.max_batch!r}.")
        if not isinstance(self.prefix_cache_entries, int) or self.prefix_cache_entries < 0:
            raise InstructRecError(f"prefix_cache_entries must be 0 or more, got {self.prefix_cache_entries!r}.")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise InstructRecError(f"batch_wait_ms must be between 0 and 1000, got {self.batch_wait_ms!r}.")
        if not 0 <= self.port <= 65535:
            raise InstructRecError(f"port must be between 0 and 65535, got {self.port}.")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise InstructRecError(
                    f"CORS origin {origin!r} must look like https://example.org (scheme and host) or be '*'."
                )

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def public_limits(self) -> dict[str, Any]:
        """The limits a client (the web page) needs to know."""
        return asdict(self.limits)
