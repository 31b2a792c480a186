"""Request and response bodies of the HTTP API (pydantic), with limits taken from the settings.

The request model is built per `ServeLimits`, so that the limits a deployment configures are the
ones validated and the ones the OpenAPI document shows. No `from __future__ import annotations`
here: pydantic and FastAPI must see real types on classes built inside a function.
"""

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from instructrec.serve.settings import ServeLimits

if TYPE_CHECKING:
    from instructrec.data import Dataset

# Shown until the recommender has loaded; then `catalogue_examples` puts the served catalogue's own.
_PLACEHOLDER_EXAMPLES = [
    {"user_id": "196", "request": "something funny to watch with my kids", "k": 5},
    {"history": ["Star Wars", "Contact"], "request": "I want a space adventure", "k": 10},
]


class RecommendedItemOut(BaseModel):
    """One ranked item."""

    rank: int = Field(description="1 for the best item.")
    item_id: str
    title: str
    score: float = Field(description="The score the ranking used (higher is better).")
    llm_score: float | None = Field(None, description="The tuned LLM's length-normalised log-likelihood.")
    retrieval_score: float | None = Field(None, description="The first-stage retriever's score.")
    reason: str = Field("", description="Why it is here: attributes, request words or history items it matched.")


class RecommendResponse(BaseModel):
    """A ranked list and how it was produced."""

    items: list[RecommendedItemOut]
    instruction: str = Field(description="The instruction text the LLM read (empty if no LLM was used).")
    aspects: str = Field(description="Aspect key such as `P1,I1,T3`.")
    template_id: str
    request_kind: str = Field(
        description="How the request was read: none, vague_intention, specific_intention, explicit_preference, mixed."
    )
    notes: list[str] = Field(description="Anything the caller should know (history truncated, cold start, ...).")
    constraints: list[str] = Field(default_factory=list, description=(
        "Constraints read from the request and the earlier turns and kept as filters (e.g. `category Horror`, "
        "`year <= 1990`, `not Comedy`)."))
    nothing_matches: bool = Field(False, description="No item satisfies the constraints; `items` is empty and "
                                                     "`notes` say what could not be matched.")
    elapsed_ms: float = Field(description="Time spent in the recommender, excluding the wait for the model.")


class ItemOut(BaseModel):
    item_id: str
    title: str


class ItemSearchResponse(BaseModel):
    query: str
    items: list[ItemOut]


class UserOut(BaseModel):
    user_id: str
    n_interactions: int
    recent: list[ItemOut] = Field(description="The user's most recent items, newest first.")


class ErrorResponse(BaseModel):
    detail: Any = Field(description="A message that says what was wrong and what to do (or a list of them).")


def _integral(value: Any) -> Any:
    """JSON Schema counts 10.0 as an integer; so does the API (10.5, "10" and true stay errors)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def build_recommend_request(limits: ServeLimits) -> type[BaseModel]:
    """The `POST /v1/recommend` body, validated against `limits`."""
    short_text = Annotated[str, Field(min_length=1, max_length=limits.max_item_chars)]

    class Turn(BaseModel):
        """An earlier turn of the conversation, sent back by the client (the server keeps none)."""

        model_config = ConfigDict(extra="forbid", strict=True)
        request: Annotated[str, Field(min_length=1, max_length=limits.max_request_chars)] = Field(
            description="What the user asked in that turn.")
        items: Annotated[list[short_text], Field(max_length=limits.max_k)] = Field(
            default_factory=list, description="Item ids that turn's answer showed, best first (\"more like #3\").")

    class RecommendRequest(BaseModel):
        """Who the user is (a known `user_id`, or a `history`, or neither for a cold start) and what they ask."""

        model_config = ConfigDict(
            extra="forbid",
            strict=True,  # JSON types as the schema says: no "5" for 5, no 0 for false
            json_schema_extra={
                "examples": _PLACEHOLDER_EXAMPLES,
                # The validator below, in the schema: not both a user_id and a history (null is absent).
                "not": {"required": ["user_id", "history"],
                        "properties": {"user_id": {"type": "string"}, "history": {"type": "array"}}},
            },
        )

        user_id: short_text | None = Field(
            None, description="A user the recommender knows; unknown users get 404 (send `history` instead)."
        )
        history: Annotated[list[short_text], Field(max_length=limits.max_history)] | None = Field(
            None, description=f"Items the user liked, oldest first: item ids or exact titles (at most {limits.max_history})."
        )
        request: Annotated[str, Field(max_length=limits.max_request_chars)] | None = Field(
            None, description=f"Free-text request, at most {limits.max_request_chars} characters."
        )
        k: Annotated[int, Field(ge=1, le=limits.max_k), BeforeValidator(_integral)] = Field(10, description=f"How many items, 1 to {limits.max_k}.")
        candidates: Annotated[list[short_text], Field(min_length=1, max_length=limits.max_candidates)] | None = Field(
            None, description=f"Rank only these item ids (at most {limits.max_candidates}); default: retrieve."
        )
        exclude_seen: bool = Field(True, description="Leave out items in the user's history.")
        conversation: Annotated[list[Turn], Field(max_length=limits.max_turns)] | None = Field(
            None, description=f"Earlier turns, oldest first (at most {limits.max_turns}): `request` refines them "
                              "(\"cheaper\", \"something older\", \"no more sequels\", \"more like #3\").")

        @model_validator(mode="after")
        def _one_user_source(self) -> "RecommendRequest":
            if self.user_id is not None and self.history is not None:
                raise ValueError("give either user_id or history, not both")
            if self.request is not None and not self.request.strip():
                self.request = None
            return self

    return RecommendRequest


def catalogue_examples(dataset: "Dataset", limits: ServeLimits) -> list[dict[str, Any]]:
    """`POST /v1/recommend` examples that the served catalogue accepts: its first user, and a
    history of its two most interacted-with items by title (by id where a title is unusable)."""
    examples: list[dict[str, Any]] = []
    users = [str(u) for u in dataset.user_ids[:50] if 0 < len(str(u)) <= limits.max_item_chars]
    if users:
        examples.append({"user_id": users[0], "request": "something funny to watch with my kids",
                         "k": min(5, limits.max_k)})
    counts = np.bincount(dataset.item_index_array, minlength=dataset.n_items)
    history = []
    for i in np.argsort(-counts, kind="stable")[:50]:
        title, item_id = str(dataset.title(int(i)) or "").strip(), str(dataset.item_ids[i])
        entry = title if 0 < len(title) <= limits.max_item_chars else item_id
        if 0 < len(entry) <= limits.max_item_chars and entry not in history:
            history.append(entry)
        if len(history) == min(2, limits.max_history):
            break
    if history:
        examples.append({"history": history, "request": "I want a space adventure", "k": min(10, limits.max_k)})
    return examples
