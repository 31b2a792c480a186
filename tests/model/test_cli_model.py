"""`instructrec score` and `instructrec train` on tiny models."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from instructrec.cli.main import app
from instructrec.errors import DataError, ModelError

runner = CliRunner()


def test_score_prints_ranked_table(tiny_llama_dir):
    result = runner.invoke(app, ["score", "--model", str(tiny_llama_dir), "--instruction", "A racing game please.",
                                 "--candidates", "Turbo Kart", "Gem Match", "Home Run", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for title in ("Turbo Kart", "Gem Match", "Home Run"):
        assert title in result.output
    rows = [line for line in result.output.splitlines() if line.strip().startswith(("│    1", "│    2", "│    3"))]
    scores = [float(r.rstrip(" │").split("│")[-1]) for r in rows]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_score_candidates_file_and_errors(tmp_path, tiny_t5_dir):
    titles = tmp_path / "titles.json"
    titles.write_text(json.dumps(["Block Drop", "Word Maze"]))
    ok = runner.invoke(app, ["score", "--model", str(tiny_t5_dir), "--instruction", "A puzzle game.",
                             "--candidates-file", str(titles), "--normalize", "sum", "--device", "cpu"])
    assert ok.exit_code == 0 and "Word Maze" in ok.output
    empty = runner.invoke(app, ["score", "--model", str(tiny_t5_dir), "--instruction", "x"])
    assert isinstance(empty.exception, DataError) and "no candidates" in str(empty.exception)
    missing = runner.invoke(app, ["score", "--model", str(tmp_path / "nope"), "--instruction", "x", "--candidates", "a"])
    assert isinstance(missing.exception, ModelError)


def test_train_command(tmp_path, tiny_llama_dir, tiny_instructions_dir):
    out = tmp_path / "tuned"
    result = runner.invoke(app, ["train", "--model", str(tiny_llama_dir), "--instructions", str(tiny_instructions_dir),
                                 "--out", str(out), "--valid", str(tiny_instructions_dir), "--lora", "--steps", "2", "--batch-size", "8", "--eval-steps", "2",
                                 "--max-eval-examples", "4"])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_model.safetensors").is_file() and (out / "instructrec.json").is_file()
    assert "eval_hr@1" in result.output
