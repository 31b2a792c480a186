"""The instruction format: aspects, `Instruction` and `Example`, and their on-disk records.

An instruction expresses a user's needs through three aspects (the paper's Table 1):
preference (P0 none, P1 implicit = history titles, P2 explicit = stated preference), intention
(I0 none, I1 vague, I2 specific) and task form (T0 pointwise yes/no, T1 pairwise, T2 matching =
generate the item, T3 reranking = pick from candidates). An `Example` is an instruction with its
target answer and provenance. Instruction data on disk is JSONL/Parquet with one `Example.to_record()`
per line, which `datasets.load_dataset` reads and `Example.from_record` restores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Preference(str, Enum):
    """Preference aspect: none, implicit (interaction history), explicit (stated preference)."""

    NONE = "P0"
    IMPLICIT = "P1"
    EXPLICIT = "P2"


class Intention(str, Enum):
    """Intention aspect: none, vague (e.g. 'a gift for my son'), specific (e.g. 'cheap, PS4, racing')."""

    NONE = "I0"
    VAGUE = "I1"
    SPECIFIC = "I2"


class TaskForm(str, Enum):
    """Task form: pointwise yes/no, pairwise choice, matching (generate the item), reranking."""

    POINTWISE = "T0"
    PAIRWISE = "T1"
    MATCHING = "T2"
    RERANKING = "T3"


class AnswerForm(str, Enum):
    """What the target text of an example is."""

    TITLE = "title"  # an item title (T2, T3, T1)
    YES_NO = "yes_no"  # "Yes" / "No" (T0)
    QUERY = "query"  # a user request written from an item (reversed task)
    PREFERENCE = "preference"  # a stated preference (reversed / intention -> preference)
    REASONING = "reasoning"  # chain-of-thought text ending in the item title


Split = str  # "train" | "valid" | "test"


@dataclass(frozen=True)
class Aspects:
    """The aspect combination of an instruction, e.g. <P1, I0, T3>. P1 and P2 may both be present
    (the paper's <P1, P2, T3>), so preference is a tuple."""

    preference: tuple[Preference, ...]
    intention: Intention
    task: TaskForm

    def key(self) -> str:
        """Canonical string such as `P1+P2,I0,T3`."""
        prefs = "+".join(p.value for p in self.preference) or Preference.NONE.value
        return f"{prefs},{self.intention.value},{self.task.value}"

    @classmethod
    def parse(cls, key: str) -> Aspects:
        """Inverse of `key()`; accepts `<P1,I0,T3>` and `P1+P2,I0,T3`."""
        parts = [p.strip() for p in key.strip().strip("<>").split(",")]
        if len(parts) == 4:  # "<P1, P2, I0, T3>" style with two preferences listed separately
            parts = [f"{parts[0]}+{parts[1]}", parts[2], parts[3]]
        elif len(parts) == 3 and parts[1].startswith("P"):  # the paper's "<P1,P2,T3>": no intention
            parts = [f"{parts[0]}+{parts[1]}", Intention.NONE.value, parts[2]]
        if len(parts) != 3:
            raise ValueError(f"aspect key {key!r} must look like 'P1,I0,T3'")
        prefs = tuple(Preference(p) for p in parts[0].split("+") if p != Preference.NONE.value)
        return cls(prefs, Intention(parts[1]), TaskForm(parts[2]))


@dataclass(frozen=True)
class Instruction:
    """A rendered instruction: the text the model reads, with its aspects and template."""

    text: str
    aspects: Aspects
    template_id: str
    candidates: tuple[str, ...] = ()
    """Candidate titles in the order shown (T3: the numbered list; T1: the two options; T0: the one item)."""
    candidate_items: tuple[str, ...] = ()
    """Item ids aligned with `candidates` (empty where candidates are not catalogue items)."""


@dataclass(frozen=True)
class Example:
    """An instruction with its target answer and where it came from."""

    instruction: Instruction
    target: str
    """The answer text: an item title, 'Yes'/'No', a query, a preference or a reasoning text."""
    answer_form: AnswerForm
    user_id: str
    item_id: str
    """The target item (the item the example is about)."""
    split: Split
    target_index: int = -1
    """Position of the true item in `instruction.candidates` (T1/T3), else -1."""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Flat JSON-able record (one line of instruction data)."""
        ins = self.instruction
        return {
            "instruction": ins.text,
            "target": self.target,
            "answer_form": self.answer_form.value,
            "aspects": ins.aspects.key(),
            "preference": "+".join(p.value for p in ins.aspects.preference) or "P0",
            "intention": ins.aspects.intention.value,
            "task": ins.aspects.task.value,
            "template_id": ins.template_id,
            "candidates": list(ins.candidates),
            "candidate_items": list(ins.candidate_items),
            "target_index": self.target_index,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "split": self.split,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Example:
        aspects = Aspects.parse(rec["aspects"])
        ins = Instruction(
            text=rec["instruction"],
            aspects=aspects,
            template_id=rec["template_id"],
            candidates=tuple(rec.get("candidates") or ()),
            candidate_items=tuple(rec.get("candidate_items") or ()),
        )
        return cls(
            instruction=ins,
            target=rec["target"],
            answer_form=AnswerForm(rec["answer_form"]),
            user_id=str(rec["user_id"]),
            item_id=str(rec["item_id"]),
            split=rec["split"],
            target_index=int(rec.get("target_index", -1)),
            meta=dict(rec.get("meta") or {}),
        )

