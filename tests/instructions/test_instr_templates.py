"""The template library: the paper's shape, validation on load, user files, rendering on real data."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.schema import Aspects
from instructrec.instructions.teachers.extractive import ExtractiveTeacher
from instructrec.instructions.templates import TemplateError, load_templates

EVALUATED = ["P1,I0,T3", "P0,I2,T3", "P1,I1,T3", "P1,I2,T3", "P1+P2,I0,T3"]

GOOD = """
version: 1
templates:
  - id: mine
    group: preference
    aspects: "P1,I0,T3"
    answer_form: title
    slots: [history, candidates]
    text: "History {history}. Pick one: {candidates}"
"""


def test_library_has_the_papers_shape():
    library = load_templates()
    assert len(library) == 39
    assert Counter(t.group for t in library) == {"preference": 17, "intention": 9, "both": 13}
    assert {t.aspects.task.value for t in library} == {"T0", "T1", "T2", "T3"}
    assert {"reversed", "pref_to_int", "int_to_pref", "cot"} <= {t.family for t in library}
    assert {t.answer_form.value for t in library} == {"title", "yes_no", "query", "preference", "reasoning"}


@pytest.mark.parametrize("key", EVALUATED)
def test_evaluated_combinations_exist_with_title_answers(key):
    found = [t for t in load_templates().with_aspects(key) if t.answer_form.value == "title"]
    assert found, key
    assert Aspects.parse("<P1,P2,I0,T3>").key() == "P1+P2,I0,T3"


def test_paper_notation_with_two_preferences_and_no_intention():
    # The paper writes the explicit-preference reranking task as <P1,P2,T3> (eval task psearch-p2).
    assert Aspects.parse("<P1,P2,T3>").key() == "P1+P2,I0,T3"
    assert Aspects.parse("P1+P2,I0,T3").key() == "P1+P2,I0,T3"
    with pytest.raises(ValueError):
        Aspects.parse("<P1,X9,T3>")


def _write(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_user_file_adds_templates(tmp_path):
    library = load_templates(_write(tmp_path, GOOD))
    assert len(library) == 40 and library.get("mine").source.endswith("mine.yaml")
    assert len(load_templates(_write(tmp_path, GOOD), builtin=False)) == 1


@pytest.mark.parametrize(("old", "new", "message"), [
    ("{candidates}\"", "{candidates} {histroy}\"", "unknown slot {histroy}"),
    ("slots: [history, candidates]", "slots: [history, candidates, preference]", "declared slot {preference} is missing"),
    ("History {history}. ", "", "declared slot {history} is missing"),
    ("slots: [history, candidates]\n    text: \"History {history}. Pick one: {candidates}\"",
     "slots: [history]\n    text: \"History {history}.\"", "need slot {candidates}"),
    ('aspects: "P1,I0,T3"', 'aspects: "P1,I9,T3"', "I9"),
    ("group: preference", "group: intention", "'preference' template, not 'intention'"),
    ("answer_form: title", "answer_form: poem", "poem"),
    ("{candidates}\"", "{candidates\"", "malformed braces"),
])
def test_broken_templates_name_template_and_slot(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(TemplateError, match=re.escape(message)) as err:
        load_templates(_write(tmp_path, GOOD.replace(old, new)))
    assert "'mine'" in str(err.value) or "mine.yaml" in str(err.value)


def test_duplicate_ids_and_bad_files(tmp_path):
    with pytest.raises(TemplateError, match="defined twice"):
        load_templates(_write(tmp_path, GOOD.replace("id: mine", "id: pref-rerank-history")))
    with pytest.raises(TemplateError, match="does not exist"):
        load_templates(tmp_path / "nope.yaml")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_templates(_write(tmp_path, "templates: [\n"))
    with pytest.raises(TemplateError, match="templates:"):
        load_templates(_write(tmp_path, "- 1\n"))


@pytest.mark.parametrize("name", ["movielens", "games"])
def test_every_template_renders_on_real_data(name, request, tmp_path):
    dataset = request.getfixturevalue(name)
    library = load_templates()
    teacher = ExtractiveTeacher().fit(dataset)
    stats = build_instructions(dataset, library, teacher, None, "train", 3, tmp_path / "out",
                               BuildSettings(max_examples=39 * 40))
    assert set(stats["per_template"]) == {t.id for t in library}
    import json

    for line in (tmp_path / "out" / "shard-00000.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert rec["instruction"].strip() and rec["target"].strip()
        assert not re.search(r"\{[a-z_]+\}", rec["instruction"] + rec["target"]), rec
        if rec["task"] == "T3":
            assert rec["candidates"][rec["target_index"]] == rec["target"] or rec["answer_form"] == "reasoning"
            assert len(rec["candidates"]) == 10 and all(f"{i}. " in rec["instruction"] for i in range(1, 11))
