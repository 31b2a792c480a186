"""Slot filling and rendering: turn a template plus a user's data into instruction text.

`Renderer` is what every other stage calls to write ONE instruction at evaluation or serving
time, with the same wording and slot filling the training data used:

    from instructrec.instructions.render import Renderer
    renderer = Renderer(dataset)                       # built-in templates, extractive teacher
    ins = renderer.rerank(
        "P1,I0,T3", history=[12, 40, 7], candidates=[5, 9, 3],   # item indices (or titles)
    )
    ins.text, ins.candidates, ins.candidate_items      # candidates keep the given order

`rerank` accepts the evaluated combinations <P1,I0,T3>, <P0,I2,T3>, <P1,I1,T3>, <P1,I2,T3> and
<P1,P2,T3> (any aspects a T3 template exists for). Preference text (P2) not given is written by the
renderer's teacher from the history; intention text (I1/I2) not given is written from
`target_item` only (the test item's own data, never the history), else it is an error.
`render_rerank_instruction(...)` is the same as a one-call function.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.errors import InstructRecError
from instructrec.instructions.schema import AnswerForm, Aspects, Instruction, Intention, Preference, TaskForm
from instructrec.instructions.teachers.base import Teacher, TeacherRequest
from instructrec.instructions.templates import Template, TemplateLibrary, load_templates
from instructrec.model.item_markers import marker

CandidateLabels = Literal["numbers", "letters"]
LETTERS = "ABCDEFGHIJKLMNOPQRST"
"""Candidate labels of the listwise head: single tokens in common tokenizers (SmolLM2 reads "10" as
two tokens, "J" as one), so one logit per candidate at the answer position ranks them all."""
LISTWISE_ANSWER_HINT = "Answer with the letter of the best candidate only."


@dataclass(frozen=True)
class RenderSettings:
    """How slots are filled."""

    history_items: int = 20
    """Most recent history items shown (the paper uses 20)."""
    history_chars: int = 1200
    """Character budget of the history slot; the oldest items are dropped until it fits."""
    history_tokens: int | None = None
    """Token budget of the history slot (needs `token_counter`); None = characters only."""
    token_counter: Callable[[str], int] | None = field(default=None, compare=False)
    """Counts tokens of a string, e.g. `lambda s: len(tokenizer(s).input_ids)`."""
    title_chars: int = 160
    """Longest title shown; longer ones are cut with an ellipsis (some Games titles run to 300)."""
    history_separator: str = "; "
    """Between history titles."""
    n_candidates: int = 10
    """Candidates per reranking instruction in built data (true item + n-1 sampled negatives)."""
    candidate_labels: CandidateLabels = "numbers"
    """How reranking candidates are listed: `numbers` (1., 2., ...; the answer is the title, the
    paper's form) or `letters` (A., B., ...; the answer is the letter: the listwise head)."""
    item_tokens: bool = False
    """Follow each history and candidate title given as an item index by its soft-token marker
    (`model.item_tokens`: collaborative soft tokens, for a model tuned with them); titles given as
    text get none."""

    def budget(self) -> dict[str, int | str]:
        """The prompt budget a model tuned on these instructions records (`instructrec.json`
        `render`) and its reranker renders with, so that served prompts are cut like training ones."""
        budget: dict[str, int | str] = {"history_items": self.history_items, "history_chars": self.history_chars,
                                        "title_chars": self.title_chars, "history_separator": self.history_separator}
        if self.item_tokens:  # only when set: models tuned before item tokens keep their recorded budget
            budget["item_tokens"] = True
        return budget

    def key(self) -> str:
        key = (f"h={self.history_items},c={self.history_chars},t={self.history_tokens},"
               f"tc={self.title_chars},sep={self.history_separator!r},n={self.n_candidates}")
        key = key if self.candidate_labels == "numbers" else key + f",labels={self.candidate_labels}"
        return key + ",items" if self.item_tokens else key


_BUDGET_FIELDS = frozenset(RenderSettings(item_tokens=True).budget())


def short_title(title: str, limit: int) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "\u2026"


def with_markers(titles: Sequence[str], items: Sequence[int] | None) -> list[str]:
    """Titles followed by their items' soft-token markers (`model.item_tokens`); as they are without items."""
    if items is None:
        return list(titles)
    if len(items) != len(titles):
        raise InstructRecError(f"{len(items)} items for {len(titles)} titles; give one item per title.")
    return [f"{t} {marker(int(i))}" for t, i in zip(titles, items, strict=True)]


def format_history(titles: Sequence[str], settings: RenderSettings, items: Sequence[int] | None = None) -> str:
    """The most recent `history_items` titles, oldest first, cut (oldest first) to the budget;
    `items` (their indices) add soft-token markers after the cut, so the same titles are shown."""
    keep = list(range(len(titles)))[-settings.history_items:]
    shown = [short_title(str(titles[i]), settings.title_chars) for i in keep]
    sep = settings.history_separator
    total = sum(len(t) for t in shown) + len(sep) * max(len(shown) - 1, 0)
    while len(shown) > 1 and total > settings.history_chars:
        total -= len(shown.pop(0)) + len(sep)
        keep.pop(0)
    text = sep.join(shown)
    if settings.history_tokens is not None and settings.token_counter is not None:
        while len(shown) > 1 and settings.token_counter(text) > settings.history_tokens:
            shown.pop(0)
            keep.pop(0)
            text = sep.join(shown)
    return sep.join(with_markers(shown, [items[i] for i in keep])) if items is not None else text


def candidate_label(index: int, labels: CandidateLabels) -> str:
    """The label of the candidate at 0-based `index`: "1", "2", ... or "A", "B", ..."""
    if labels == "numbers":
        return str(index + 1)
    if index >= len(LETTERS):
        raise InstructRecError(f"the listwise head labels at most {len(LETTERS)} candidates, not {index + 1}; "
                               "rerank fewer candidates per instruction.")
    return LETTERS[index]


def format_candidates(titles: Sequence[str], settings: RenderSettings, labels: CandidateLabels | None = None,
                      notes: Sequence[str] | None = None, items: Sequence[int] | None = None) -> str:
    """A labelled list, one candidate per line (`labels` overrides the settings' label style);
    `notes` (one per candidate, e.g. `instructions.notes`) follow their titles in parentheses;
    `items` (their indices) add soft-token markers after the titles."""
    style = labels or settings.candidate_labels
    if notes is not None and len(notes) != len(titles):
        raise InstructRecError(f"{len(notes)} notes for {len(titles)} candidates; give one note per candidate.")
    shown = with_markers([short_title(str(t), settings.title_chars) for t in titles], items)
    return "\n" + "\n".join(f"{candidate_label(i, style)}. {t}"
                             + (f" ({notes[i]})" if notes is not None else "") for i, t in enumerate(shown))


def sample_negatives(n_items: int, k: int, exclude: set[int] | frozenset[int], rng: random.Random) -> list[int]:
    """`k` distinct random items not in `exclude` (the user's items and the target)."""
    if n_items - len(exclude) < k:
        raise InstructRecError(f"cannot sample {k} negatives from {n_items} items with {len(exclude)} excluded; "
                               "use fewer candidates.")
    out: list[int] = []
    taken = set()
    while len(out) < k:
        item = rng.randrange(n_items)
        if item not in exclude and item not in taken:
            taken.add(item)
            out.append(item)
    return out


class Renderer:
    """Renders instructions from templates for given history, candidates and aspect texts."""

    def __init__(self, dataset: Dataset | None = None, templates: TemplateLibrary | None = None,
                 teacher: Teacher | None = None, settings: RenderSettings | None = None) -> None:
        self.dataset = dataset
        self.templates = templates or load_templates()
        self.settings = settings or RenderSettings()
        self._teacher = teacher
        self._teacher_fitted = teacher is not None

    def with_budget(self, budget: Mapping[str, Any]) -> Renderer:
        """The same templates and teacher with a model's recorded prompt budget
        (`RenderSettings.budget`); itself when the budget is what it renders with already."""
        settings = replace(self.settings, **{k: v for k, v in budget.items() if k in _BUDGET_FIELDS})
        if settings == self.settings:
            return self
        out = Renderer(self.dataset, self.templates, self._teacher, settings)
        out._teacher_fitted = self._teacher_fitted
        return out

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            from instructrec.instructions.teachers.extractive import ExtractiveTeacher

            self._teacher = ExtractiveTeacher()
        if not self._teacher_fitted:
            if self.dataset is None:
                raise InstructRecError("writing preference/intention text needs a dataset: pass "
                                       "Renderer(dataset, ...) or give the text yourself.")
            self._teacher.fit(self.dataset)
            self._teacher_fitted = True
        return self._teacher

    def _titles(self, items: Sequence[int | str] | np.ndarray) -> tuple[list[str], list[str]]:
        """Titles and item ids for item indices; titles pass through (ids left empty)."""
        items = list(items)
        if all(isinstance(i, str) for i in items):
            return [str(i) for i in items], []
        if self.dataset is None:
            raise InstructRecError("item indices need a dataset to look up titles: pass Renderer(dataset).")
        n = self.dataset.n_items
        bad = [i for i in items if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n]
        if bad:
            raise InstructRecError(f"item {bad[0]!r} is not an item index of this dataset (0..{n - 1}); "
                                   "give all items as indices or all as titles.")
        return ([str(self.dataset.titles[int(i)]) for i in items],
                [str(self.dataset.item_ids[int(i)]) for i in items])

    def template_for(self, aspects: Aspects | str, template_id: str | None = None) -> Template:
        """The given template, or the first plain title-answer template with these aspects."""
        if template_id is not None:
            template = self.templates.get(template_id)
            if isinstance(aspects, str):
                aspects = Aspects.parse(aspects)
            if template.aspects != aspects:
                raise InstructRecError(f"template {template_id!r} has aspects {template.aspects.key()}, "
                                       f"not {aspects.key()}.")
            return template
        found = self.templates.with_aspects(aspects, AnswerForm.TITLE)
        if not found:
            key = aspects if isinstance(aspects, str) else aspects.key()
            raise InstructRecError(f"no template with aspects {key} and a title answer; "
                                   "add one with --templates or pick other aspects.")
        return found[0]

    def fill(self, template: Template, *, history: Sequence[str] = (), preference: str | None = None,
             intention: str | None = None, candidates: Sequence[str] = (), item: str | None = None,
             pair: tuple[str, str] | None = None, labels: CandidateLabels | None = None,
             notes: Sequence[str] | None = None, history_items: Sequence[int] | None = None,
             candidate_items: Sequence[int] | None = None) -> str:
        """Render `template` from already-prepared texts (titles, preference, intention); `labels`
        overrides the settings' candidate labels (letters add the one-letter answer hint); `notes`
        annotate the candidates (`instructions.notes`); `history_items` / `candidate_items`, the
        titles' item indices, add soft-token markers when the settings ask for `item_tokens`."""
        style = labels or self.settings.candidate_labels
        if not self.settings.item_tokens:
            history_items = candidate_items = None
        values: dict[str, str] = {}
        if "history" in template.slots:
            if not len(history):
                raise InstructRecError(f"template {template.id!r} shows the user's history but the history is "
                                       "empty; use a template without P1 (e.g. aspects P0,I2,T3) for new users.")
            values["history"] = format_history(history, self.settings, history_items)
        if "candidates" in template.slots or "n_candidates" in template.slots:
            if len(candidates) < 1:
                raise InstructRecError(f"template {template.id!r} needs candidates; none were given.")
            values["candidates"] = format_candidates(candidates, self.settings, style, notes, candidate_items)
            values["n_candidates"] = str(len(candidates))
        for slot, value in (("preference", preference), ("intention", intention), ("item", item)):
            if slot in template.slots:
                if not value:
                    raise InstructRecError(f"template {template.id!r} needs the {slot} text; none was given.")
                values[slot] = short_title(value, self.settings.title_chars) if slot == "item" else value
        if "item_a" in template.slots:
            if pair is None:
                raise InstructRecError(f"template {template.id!r} needs two items to compare.")
            values["item_a"], values["item_b"] = (short_title(p, self.settings.title_chars) for p in pair)
        text = template.render(values)
        listwise = style == "letters" and "candidates" in template.slots and template.answer_form is AnswerForm.TITLE
        return f"{text}\n{LISTWISE_ANSWER_HINT}" if listwise else text

    def rerank(self, aspects: Aspects | str, history: Sequence[int | str] | np.ndarray = (),
               candidates: Sequence[int | str] | np.ndarray = (), *, preference: str | None = None,
               intention: str | None = None, target_item: int | None = None, user_id: str = "",
               template_id: str | None = None, labels: CandidateLabels | None = None,
               notes: Sequence[str] | None = None) -> Instruction:
        """One T3 instruction; candidates appear labelled (numbers, or letters for the listwise
        head) in the order given."""
        template = self.template_for(aspects, template_id)
        if template.aspects.task is not TaskForm.RERANKING:
            raise InstructRecError(f"template {template.id!r} is {template.aspects.task.value}, not T3 reranking.")
        hist_titles, hist_ids = self._titles(history)
        cand_titles, cand_ids = self._titles(candidates)
        if Preference.EXPLICIT in template.aspects.preference and preference is None:
            if hist_titles and not hist_ids:
                raise InstructRecError("give `preference` text when the history is given as titles.")
            hist_idx = tuple(int(i) for i in history)
            preference = self.teacher.answer([TeacherRequest("preference", user_id, history=hist_idx)])[0].text
        if template.aspects.intention is not Intention.NONE and intention is None:
            if target_item is None:
                raise InstructRecError(f"aspects {template.aspects.key()} need an intention: pass `intention` "
                                       "text or `target_item` (the item whose data it is written from).")
            kind = "vague_intention" if template.aspects.intention is Intention.VAGUE else "specific_intention"
            intention = self.teacher.answer([TeacherRequest(kind, user_id, item=int(target_item))])[0].text
        text = self.fill(template, history=hist_titles, preference=preference, intention=intention,
                         candidates=cand_titles, labels=labels, notes=notes,
                         history_items=[int(i) for i in history] if hist_ids else None,
                         candidate_items=[int(i) for i in candidates] if cand_ids else None)
        return Instruction(text, template.aspects, template.id, tuple(cand_titles), tuple(cand_ids))


def render_rerank_instruction(aspects: Aspects | str, history: Sequence[int | str] | np.ndarray,
                              candidates: Sequence[int | str] | np.ndarray, *, dataset: Dataset | None = None,
                              preference: str | None = None, intention: str | None = None,
                              target_item: int | None = None, template_id: str | None = None,
                              templates: TemplateLibrary | None = None,
                              settings: RenderSettings | None = None) -> Instruction:
    """One-call form of `Renderer(dataset, templates, settings=settings).rerank(...)`.

    For many calls build one `Renderer` and reuse it (it fits its teacher once).
    """
    renderer = Renderer(dataset, templates, settings=settings)
    return renderer.rerank(aspects, history, candidates, preference=preference, intention=intention,
                           target_item=target_item, template_id=template_id)
