"""What a `Recommender` returns: ranked items with scores and the instruction that was used."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecommendedItem:
    """One recommended item."""

    item_id: str
    title: str
    score: float
    """The final score the ranking used (higher is better)."""
    llm_score: float | None = None
    """The tuned LLM's length-normalised log-likelihood of the title, where the LLM ranked."""
    retrieval_score: float | None = None
    """The first-stage retriever's score."""
    reason: str = ""
    """One line on why it is here: attributes it matched, request words, similar history items."""


@dataclass(frozen=True)
class RecommendResult:
    """A ranked list plus how it was produced."""

    items: list[RecommendedItem]
    instruction: str
    """The instruction text the LLM read (empty if no LLM was used)."""
    aspects: str
    """Aspect key such as `P1,I1,T3`."""
    template_id: str
    request_kind: str
    """How the request was read: none, vague_intention, specific_intention, explicit_preference, mixed."""
    notes: list[str] = field(default_factory=list)
    """Anything the caller should know (history truncated, cold start, ...)."""
    constraints: list[str] = field(default_factory=list)
    """The constraints read from the request (and earlier turns) and applied as filters."""
    nothing_matches: bool = False
    """True when no item satisfies the constraints: `items` is empty and `notes` say why."""
    pool: dict[str, int] = field(default_factory=dict)
    """The first-stage pool the LLM reranked: `size`, and `from_request` (items the request's
    retrieval contributed; the rest came from the history's)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
