"""The `local` teacher with a tiny random Llama and a tokenizer trained on the fly (no hub)."""

from __future__ import annotations

import pytest

from instructrec.instructions.builder import BuildSettings, build_instructions
from instructrec.instructions.teachers import LocalSettings, LocalTeacher, TeacherError, TeacherRequest
from instructrec.instructions.teachers.prompts import clean_reply
from instructrec.instructions.templates import load_templates

SOURCES = {"llm", "fallback:llm-unusable", "fallback:llm-title-leak"}


def _requests(dataset):
    seq = dataset.sequences[1]
    return ([TeacherRequest("preference", "u", history=tuple(int(i) for i in seq[:k])) for k in (3, 5, 8)]
            + [TeacherRequest("specific_intention", "u", item=int(i)) for i in seq[:3]]
            + [TeacherRequest("vague_intention", "u", item=int(seq[4]))])


def test_batched_generate_cache_and_determinism(tiny_llama_dir, movielens, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    batches = []
    original = model.generate

    def spy(**kw):
        batches.append(kw["input_ids"].shape[0])
        return original(**kw)

    model.generate = spy
    settings = LocalSettings(batch_size=4, max_new_tokens=8)
    teacher = LocalTeacher(model, tokenizer, settings, cache_path=tmp_path / "c.sqlite").fit(movielens)
    answers = teacher.answer(_requests(movielens))
    assert batches == [4, 3] and teacher.calls == 7
    assert len(answers) == 7 and {a.source for a in answers} <= SOURCES
    assert all(a.text.strip() for a in answers)
    assert teacher.failures == sum(a.is_fallback for a in answers)
    assert teacher.answer(_requests(movielens)) == answers and batches == [4, 3]  # cached: no new generate
    from_folder = LocalTeacher(tiny_llama_dir, settings=settings, cache_path=tmp_path / "d.sqlite").fit(movielens)
    assert from_folder.answer(_requests(movielens)) == answers  # greedy: same texts from the saved folder


def test_local_teacher_builds_data(tiny_llama_dir, movielens, tmp_path):
    teacher = LocalTeacher(tiny_llama_dir, settings=LocalSettings(batch_size=8, max_new_tokens=6),
                           cache_path=tmp_path / "c.sqlite").fit(movielens)
    stats = build_instructions(movielens, load_templates(), teacher, {"both": 1, "preference": 0, "intention": 0},
                               "train", 0, tmp_path / "out", BuildSettings(max_examples=16))
    assert stats["examples"] == 16 and stats["teacher"] == "local"
    sources = {k.split(":", 1)[1] for k in stats["per_teacher_source"]}
    assert sources <= SOURCES


def test_missing_folder_and_clean_reply(tmp_path):
    with pytest.raises(TeacherError, match="does not exist"):
        LocalTeacher(tmp_path / "nope")
    assert clean_reply('\n  "Answer: a racing game for Wii"\nmore') == "a racing game for Wii"
    assert clean_reply("  \n ..\n") is None


def test_clean_reply_drops_loops_and_cuts():
    looped = "I like racing games. I like racing games. I like racing games. I also like puzzles. And more."
    assert clean_reply(looped) == "I like racing games. I also like puzzles."
    assert clean_reply("x" * 50 + ". " + "y" * 400, max_chars=100) == "x" * 50 + "."
