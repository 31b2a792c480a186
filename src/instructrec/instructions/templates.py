"""The template library: loading, validation and lookup.

Templates live in YAML files (the built-in `templates.yaml` next to this module, plus any files a
user adds). Each declares its aspects, answer form, diversification family and the slots its text
uses; `load_templates` checks every template on load, so a typo in a slot name is one clear
`TemplateError` naming the template and the slot instead of a KeyError deep inside a build.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from instructrec.errors import InstructRecError
from instructrec.instructions.schema import AnswerForm, Aspects, Intention, Preference, TaskForm

Group = Literal["preference", "intention", "both"]
Family = Literal["plain", "reversed", "pref_to_int", "int_to_pref", "cot"]
GROUPS: tuple[str, ...] = ("preference", "intention", "both")
FAMILIES: tuple[str, ...] = ("plain", "reversed", "pref_to_int", "int_to_pref", "cot")

INSTRUCTION_SLOTS = frozenset(
    {"history", "preference", "intention", "candidates", "n_candidates", "item", "item_a", "item_b"}
)
"""Slots an instruction text may use (see the header of templates.yaml)."""
ANSWER_SLOTS = frozenset({"target_title", "preference", "intention"})
"""Slots a reasoning answer may use."""


class TemplateError(InstructRecError):
    """A template file or template that cannot be used as written."""


@dataclass(frozen=True)
class Template:
    """One instruction template."""

    id: str
    """Unique name, e.g. `pref-rerank-history`."""
    group: Group
    """preference-centred, intention-centred or both."""
    aspects: Aspects
    """The aspect combination the rendered instruction has."""
    answer_form: AnswerForm
    """What the target text is (title, yes_no, query, preference, reasoning)."""
    family: Family
    """Diversification family: plain, reversed, pref_to_int, int_to_pref or cot."""
    slots: frozenset[str]
    """Slots used by `text`."""
    text: str
    """The instruction text with `{slot}` placeholders."""
    answer: str | None = None
    """Target text with answer slots (reasoning answers only)."""
    source: str = "built-in"
    """The file the template came from."""

    def needs(self, slot: str) -> bool:
        return slot in self.slots or (self.answer is not None and slot in _fields(self.answer))

    def render(self, values: dict[str, str]) -> str:
        return self.text.format_map(values)


def _fields(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"malformed braces: {exc}") from None


def required_slots(aspects: Aspects, answer: AnswerForm) -> set[str]:
    """Slots an instruction with these aspects must contain to be meaningful."""
    need: set[str] = set()
    if Preference.IMPLICIT in aspects.preference:
        need.add("history")
    if Preference.EXPLICIT in aspects.preference and answer is not AnswerForm.PREFERENCE:
        need.add("preference")
    if aspects.intention is not Intention.NONE and answer is not AnswerForm.QUERY:
        need.add("intention")
    if answer is AnswerForm.QUERY and aspects.intention is Intention.NONE:
        raise ValueError("a query answer needs an intention aspect (I1 or I2) to say which kind")
    task = aspects.task
    if task is TaskForm.RERANKING:
        need.add("candidates")
    elif task is TaskForm.POINTWISE:
        need.add("item")
    elif task is TaskForm.PAIRWISE:
        need |= {"item_a", "item_b"}
    if answer is AnswerForm.QUERY and not ({"item", "preference"} & need):
        need.add("item")  # a reversed query is written from an item (or, pref_to_int, a preference)
    return need


def _parse_template(raw: object, source: str, index: int) -> Template:
    if not isinstance(raw, dict):
        raise TemplateError(f"{source}: template #{index} is not a mapping.")
    tid = str(raw.get("id") or f"#{index}")
    where = f"{source}: template {tid!r}"
    known = {"id", "group", "aspects", "answer_form", "family", "slots", "text", "answer"}
    extra = set(raw) - known
    if extra:
        raise TemplateError(f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(known)}.")
    for name in ("id", "group", "aspects", "answer_form", "text", "slots"):
        if name not in raw:
            raise TemplateError(f"{where}: missing field {name!r}.")
    try:
        aspects = Aspects.parse(str(raw["aspects"]))
        answer_form = AnswerForm(raw["answer_form"])
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc}.") from None
    group, family = raw["group"], raw.get("family", "plain")
    if group not in GROUPS:
        raise TemplateError(f"{where}: group {group!r} must be one of {GROUPS}.")
    if family not in FAMILIES:
        raise TemplateError(f"{where}: family {family!r} must be one of {FAMILIES}.")
    has_pref, has_int = bool(aspects.preference), aspects.intention is not Intention.NONE
    expected = "both" if has_pref and has_int else "preference" if has_pref else "intention" if has_int else None
    if expected != group:
        raise TemplateError(f"{where}: aspects {aspects.key()} make it a {expected!r} template, not {group!r}.")
    text = str(raw["text"]).strip()
    declared = set(raw["slots"] or [])
    try:
        used = _fields(text)
    except ValueError as exc:
        raise TemplateError(f"{where}: text has {exc}.") from None
    for slot in sorted(used | declared):
        if slot not in INSTRUCTION_SLOTS:
            raise TemplateError(f"{where}: unknown slot {{{slot}}}; known slots: {sorted(INSTRUCTION_SLOTS)}.")
    for slot in sorted(declared - used):
        raise TemplateError(f"{where}: declared slot {{{slot}}} is missing from the text.")
    for slot in sorted(used - declared):
        raise TemplateError(f"{where}: the text uses slot {{{slot}}} but `slots` does not declare it.")
    try:
        need = required_slots(aspects, answer_form)
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc}.") from None
    for slot in sorted(need - used):
        raise TemplateError(f"{where}: aspects {aspects.key()} with answer {answer_form.value!r} "
                            f"need slot {{{slot}}} in the text.")
    answer = raw.get("answer")
    if answer_form is AnswerForm.REASONING:
        if not answer:
            raise TemplateError(f"{where}: a reasoning template needs an `answer` text ending in {{target_title}}.")
        answer = str(answer).strip()
        try:
            answer_used = _fields(answer)
        except ValueError as exc:
            raise TemplateError(f"{where}: answer has {exc}.") from None
        for slot in sorted(answer_used - ANSWER_SLOTS):
            raise TemplateError(f"{where}: unknown answer slot {{{slot}}}; known: {sorted(ANSWER_SLOTS)}.")
        if "target_title" not in answer_used:
            raise TemplateError(f"{where}: answer slot {{target_title}} is missing from the answer.")
    elif answer:
        raise TemplateError(f"{where}: only reasoning templates take an `answer` text.")
    return Template(tid, group, aspects, answer_form, family, frozenset(used), text, answer, source)


def parse_templates(doc: object, source: str) -> list[Template]:
    """Templates from a parsed YAML document `{version: 1, templates: [...]}`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("templates"), list):
        raise TemplateError(f"{source}: expected a mapping with a `templates:` list.")
    return [_parse_template(raw, source, i) for i, raw in enumerate(doc["templates"])]


class TemplateLibrary:
    """An ordered, validated set of templates with lookups by id and aspects."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self.templates: list[Template] = []
        self._by_id: dict[str, Template] = {}
        for template in templates:
            if template.id in self._by_id:
                other = self._by_id[template.id].source
                raise TemplateError(f"template id {template.id!r} is defined twice ({other} and {template.source}).")
            self._by_id[template.id] = template
            self.templates.append(template)
        if not self.templates:
            raise TemplateError("the template library is empty.")

    def __len__(self) -> int:
        return len(self.templates)

    def __iter__(self) -> Iterator[Template]:
        return iter(self.templates)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._by_id

    def get(self, template_id: str) -> Template:
        try:
            return self._by_id[template_id]
        except KeyError:
            raise TemplateError(f"unknown template id {template_id!r}; see `instructrec instructions templates`.") from None

    def with_aspects(self, aspects: Aspects | str, answer_form: AnswerForm | None = None) -> list[Template]:
        """Templates whose aspects equal `aspects` (optionally with a given answer form)."""
        key = aspects.key() if isinstance(aspects, Aspects) else Aspects.parse(aspects).key()
        return [t for t in self.templates if t.aspects.key() == key
                and (answer_form is None or t.answer_form is answer_form)]

    def select(self, ids: Sequence[str]) -> TemplateLibrary:
        return TemplateLibrary(self.get(i) for i in ids)


def load_templates(*extra: str | Path, builtin: bool = True) -> TemplateLibrary:
    """The built-in library plus user template files (YAML), validated.

    `load_templates()` gives the 39 built-in templates; `load_templates("mine.yaml")` adds yours
    (ids must not clash); `load_templates("mine.yaml", builtin=False)` uses only yours.
    """
    found: list[Template] = []
    if builtin:
        text = resources.files("instructrec.instructions").joinpath("templates.yaml").read_text("utf-8")
        found += parse_templates(yaml.safe_load(text), "built-in templates.yaml")
    for path in extra:
        path = Path(path)
        if not path.exists():
            raise TemplateError(f"template file {path} does not exist.")
        try:
            doc = yaml.safe_load(path.read_text("utf-8"))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
        found += parse_templates(doc, str(path))
    return TemplateLibrary(found)
