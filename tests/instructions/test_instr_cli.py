"""`instructrec instructions build|show|templates`."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from instructrec.cli.main import app

runner = CliRunner()


def test_build_show_and_resume(tmp_path, movielens):
    out = tmp_path / "ml"
    args = ["instructions", "build", "--data", "movielens", "--out", str(out), "--max-examples", "500",
            "--seed", "3", "--mix", "T3=2", "--mix", "P1,I0,T3=3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["examples"] == 500 and stats["per_task"]["T3"] > stats["per_task"]["T0"]
    before = (out / "shard-00000.jsonl").read_bytes()
    assert runner.invoke(app, args).exit_code == 0  # a rerun of a finished build changes nothing
    assert (out / "shard-00000.jsonl").read_bytes() == before
    shown = runner.invoke(app, ["instructions", "show", str(out), "--n", "3"])
    assert shown.exit_code == 0 and shown.output.count("target:") == 3
    listed = runner.invoke(app, ["instructions", "templates"])
    assert listed.exit_code == 0 and "39 templates" in listed.output


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates:\n  - {id: x, group: preference, aspects: 'P1,I0,T2', answer_form: title,"
                   " slots: [history], text: 'I liked {history} and {hstory}'}\n")
    cmd = [sys.executable, "-m", "instructrec.cli.main", "instructions", "build", "--data", "movielens",
           "--out", str(tmp_path / "o"), "--templates", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "template 'x'" in proc.stderr and "{hstory}" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd[:-2] + ["--mix", "nonsense"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "KEY=WEIGHT" in proc.stderr


def test_item_token_build_and_a_retriever_without_item_embeddings(tmp_path, movielens):
    """`build --item-tokens` writes each history and candidate title's marker; `train --item-tokens`
    refuses a retriever with no item embeddings, in one line."""
    import re

    from instructrec.candidates.base import create_retriever
    from instructrec.data.split import leave_one_out

    out = tmp_path / "items"
    args = ["instructions", "build", "--data", "movielens", "--out", str(out), "--max-examples", "20",
            "--mix", "T0=0", "--mix", "T1=0", "--mix", "T2=0", "--mix", "cot=0", "--item-tokens"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    recs = [json.loads(line) for line in (out / "shard-00000.jsonl").read_text().splitlines()]
    for rec in recs:
        marked = {int(i) for i in re.findall(r"<\|item:(\d+)\|>", rec["instruction"])}
        assert {movielens.item_index(i) for i in rec["candidate_items"]} <= marked
        assert rec["render"]["item_tokens"] is True
    pop = create_retriever("popularity").fit(movielens, leave_one_out(movielens))
    pop.save(tmp_path / "pop")
    bad = runner.invoke(app, ["train", "--instructions", str(out), "--out", str(tmp_path / "m"),
                              "--item-tokens", str(tmp_path / "pop")])
    assert bad.exit_code != 0 and "no item embeddings" in str(bad.exception)
