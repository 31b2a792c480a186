"""build_instructions: output format, determinism, no leakage, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from instructrec.data.split import leave_one_out
from instructrec.errors import InstructRecError
from instructrec.instructions.builder import BuildSettings, build_instructions, mix_weights
from instructrec.instructions.schema import Example
from instructrec.instructions.teachers.extractive import ExtractiveTeacher
from instructrec.instructions.templates import load_templates


@pytest.fixture(scope="module")
def ml_teacher(movielens):
    return ExtractiveTeacher().fit(movielens)


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.open()]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "build.json"}


def test_output_reads_with_datasets_and_round_trips(movielens, ml_teacher, tmp_path):
    import datasets

    stats = build_instructions(movielens, load_templates(), ml_teacher, None, "train", 0, tmp_path / "o",
                               BuildSettings(max_examples=900, shard_size=400))
    assert stats["examples"] == 900 and stats["shards"] == 3
    assert sum(stats["per_template"].values()) == 900 == sum(stats["per_aspects"].values())
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "o" / "shard-*.jsonl"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == 900
    row = loaded[0]
    assert Example.from_record(row).to_record()["instruction"] == row["instruction"]
    on_disk = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert on_disk["per_template"] == stats["per_template"]


def test_deterministic_for_a_seed(movielens, ml_teacher, tmp_path):
    settings = BuildSettings(max_examples=600, shard_size=250)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        build_instructions(movielens, load_templates(), ExtractiveTeacher().fit(movielens), None, "train", seed,
                           tmp_path / name, settings)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_no_leakage(movielens, ml_teacher, tmp_path):
    split = leave_one_out(movielens)
    ids = movielens.item_ids
    build_instructions(movielens, load_templates(), ml_teacher, None, "train", 0, tmp_path / "train",
                       BuildSettings(max_examples=30_000))
    build_instructions(movielens, load_templates(), ml_teacher, None, "test", 0, tmp_path / "test")
    build_instructions(movielens, load_templates(), ml_teacher, None, "valid", 0, tmp_path / "valid")
    pos = {str(movielens.user_ids[u]): row for row, u in enumerate(split.users)}
    train_sets = [{str(ids[i]) for i in seq} for seq in split.train]
    train = _records(tmp_path / "train")
    for rec in train:
        row = pos[rec["user_id"]]
        allowed = train_sets[row]
        # targets and histories come only from interactions before the validation target
        assert rec["item_id"] in allowed and set(rec["meta"]["history"]) <= allowed
    test = _records(tmp_path / "test")
    assert len(test) == len(split)
    test_pairs = {(r["user_id"], r["item_id"]) for r in test}
    for rec in test:
        row = pos[rec["user_id"]]
        assert rec["item_id"] == str(ids[split.test_target[row]])
        assert rec["meta"]["history"][-1] == str(ids[split.valid_target[row]])
    # a test example (user, last item) never occurs as a training target
    leaked = [(r["user_id"], r["item_id"]) for r in train
              if (r["user_id"], r["item_id"]) in test_pairs and r["item_id"] not in train_sets[pos[r["user_id"]]]]
    assert not leaked
    assert all(r["item_id"] == str(ids[split.valid_target[pos[r["user_id"]]]]) for r in _records(tmp_path / "valid"))
    # negatives are never the user's own items of that split (training: the training sequence, so
    # sampling itself uses no validation/test data) or the target
    for rec in train + test:
        if rec["task"] == "T3":
            row = pos[rec["user_id"]]
            own = ({str(ids[i]) for i in movielens.sequences[split.users[row]]} if rec["split"] == "test"
                   else train_sets[row]) | {rec["item_id"]}
            negatives = [c for i, c in enumerate(rec["candidate_items"]) if i != rec["target_index"]]
            assert not set(negatives) & own


def test_mix_and_folder_guards(movielens, ml_teacher, tmp_path):
    library = load_templates()
    only_t3 = mix_weights(library, {"T0": 0, "T1": 0, "T2": 0})
    assert all((w > 0) == (t.aspects.task.value == "T3") for w, t in zip(only_t3, library))
    with pytest.raises(InstructRecError, match="match no template"):
        mix_weights(library, {"T7": 1})
    stats = build_instructions(movielens, library, ml_teacher, {"P1,I0,T3": 1, "T0": 0, "T1": 0, "T2": 0,
                               "P0,I2,T3": 0}, "train", 0, tmp_path / "m", BuildSettings(max_examples=300))
    assert "P0,I2,T3" not in stats["per_aspects"] and set(stats["per_task"]) == {"T3"}
    with pytest.raises(InstructRecError, match="other settings"):
        build_instructions(movielens, library, ml_teacher, None, "train", 1, tmp_path / "m",
                           BuildSettings(max_examples=300))
    build_instructions(movielens, library, ml_teacher, None, "train", 1, tmp_path / "m",
                       BuildSettings(max_examples=300), overwrite=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    with pytest.raises(InstructRecError, match="other files"):
        build_instructions(movielens, library, ml_teacher, None, "train", 1, tmp_path / "junk")
    assert (tmp_path / "junk" / "x.txt").read_text() == "mine"
    # a build killed inside the atomic write of its first state file leaves only that temporary
    # (of a process that is gone): the rerun builds, it is not "other files"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / f".build.json.tmp-{dead.pid}-0123abcd").write_text("{")
    build_instructions(movielens, library, ml_teacher, None, "train", 1, tmp_path / "killed",
                       BuildSettings(max_examples=300))
    assert not list((tmp_path / "killed").glob(".build.json.tmp-*"))


SCRIPT = textwrap.dedent("""
    import sys, time
    from instructrec.data.loaders.movielens import load_movielens_100k
    from instructrec.instructions.builder import BuildSettings, build_instructions
    from instructrec.instructions.templates import load_templates
    from instructrec.instructions.teachers.extractive import ExtractiveTeacher

    class Slow(ExtractiveTeacher):
        def answer(self, requests):
            time.sleep(float(sys.argv[2]))  # slow enough to be killed mid-build
            return super().answer(requests)

    ds = load_movielens_100k()
    build_instructions(ds, load_templates(), Slow().fit(ds), None, "train", 7, sys.argv[1],
                       BuildSettings(max_examples=6000, shard_size=300))
""")


def test_resume_after_sigkill_gives_the_uninterrupted_output(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    subprocess.run([sys.executable, str(script), str(tmp_path / "full"), "0"], check=True, env=env, timeout=300)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "cut"), "0.3"], env=env)
    deadline = time.time() + 240
    while len(list((tmp_path / "cut").glob("shard-*.jsonl"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((tmp_path / "cut").glob("shard-*.jsonl")))
    assert 3 <= done < 20, "the build should have been killed part-way"
    assert not (tmp_path / "cut" / "stats.json").exists()
    subprocess.run([sys.executable, str(script), str(tmp_path / "cut"), "0"], check=True, env=env, timeout=300)
    assert _files(tmp_path / "cut") == _files(tmp_path / "full")
    assert json.loads((tmp_path / "cut" / "build.json").read_text())["complete"] is True
    assert len(_records(tmp_path / "cut")) == 6000
    assert len({r["id"] for r in _records(tmp_path / "cut")}) == 6000
