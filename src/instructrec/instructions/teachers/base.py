"""What a teacher is: it writes the texts the data lacks (explicit preferences P2, vague
intentions I1, specific intentions I2) from what the data has.

Builders hand a teacher a batch of `TeacherRequest`s and get one `TeacherAnswer` per request, in
order. Each answer says where its text came from (`source`), so fallbacks are counted and
reported rather than hidden. A request carries only the data it may use: a preference request
only the history before the target, an intention request only the target item (and the user's
review of it), which keeps test-time intentions free of anything but the test item's own data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from instructrec.data.dataset import Dataset
from instructrec.errors import InstructRecError

Kind = Literal["preference", "vague_intention", "specific_intention"]
KINDS: tuple[str, ...] = ("preference", "vague_intention", "specific_intention")


class TeacherError(InstructRecError):
    """A teacher that cannot work as configured (endpoint down, model missing, ...)."""


@dataclass(frozen=True)
class TeacherRequest:
    """One text to write."""

    kind: Kind
    """preference (P2) | vague_intention (I1) | specific_intention (I2)."""
    user_id: str
    """Whose text it is (reviews are looked up by user and item)."""
    item: int = -1
    """Target item index (intentions); -1 for preferences."""
    history: tuple[int, ...] = ()
    """Item indices before the target, oldest first (preferences)."""
    review: str | None = None
    """The user's review of `item`, if any (vague intentions)."""


@dataclass(frozen=True)
class TeacherAnswer:
    """The written text and its provenance."""

    text: str
    source: str
    """e.g. `tfidf`, `review`, `categories`, `title-keywords`, `llm`, `fallback:<reason>`."""

    @property
    def is_fallback(self) -> bool:
        return self.source.startswith("fallback")


@runtime_checkable
class Teacher(Protocol):
    """Writes P2/I1/I2 texts. `fit` sees the dataset once; `answer` is called per batch."""

    name: str

    def fit(self, dataset: Dataset) -> Teacher: ...

    def answer(self, requests: Sequence[TeacherRequest]) -> list[TeacherAnswer]: ...

    def fingerprint(self) -> str:
        """A string that changes whenever the teacher would write different texts (for resume)."""
        ...
