"""`instructrec score` and `instructrec train` on tiny models."""

from __future__ import annotations

import json
import re
from dataclasses import fields

from typer.testing import CliRunner

from instructrec.cli.main import app
from instructrec.errors import DataError, ModelError
from instructrec.model.prompt import PromptSettings
from instructrec.settings_docs import default, doc, field_docs
from instructrec.training import TrainResult, TrainSettings

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


# `instructrec train` options take help and default from the settings dataclasses: option names
# are the field names with dashes, but for these
RENAMED = {"out_dir": "--out", "max_steps": "--steps", "learning_rate": "--lr", "lora": "--lora",
           "use_chat_template": "--chat-template"}
NOT_OPTIONS = {"prompt", "answer_prefix"}  # the prompt object itself; whitespace-sensitive text, API only


def help_rows(output: str) -> dict[str, str]:
    """{option: its help text, whitespace collapsed} from typer's rich help panel."""
    rows: dict[str, list[str]] = {}
    head = re.compile(r"^(\s*\*?\s*)(--[\w-]+)(?:\s+--[\w-]+)?\s+<[^>]+>\s+")
    col, current = None, None
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        body = line[1:].rstrip().removesuffix("│")
        m = head.match(body)
        if m:
            col, current = m.end(), m.group(2)
            rows[current] = [body[col:]]
        elif current is not None and col is not None and not body[:col].strip():
            rows[current].append(body[col:])
    return {k: " ".join(" ".join(v).split()) for k, v in rows.items()}


def option_fields():
    for cls in (TrainSettings, PromptSettings):
        for f in fields(cls):
            if f.name not in NOT_OPTIONS:
                yield cls, f.name, RENAMED.get(f.name, "--" + f.name.replace("_", "-"))


def test_every_settings_field_is_documented():
    for cls in (TrainSettings, TrainResult, PromptSettings):
        assert set(field_docs(cls)) == {f.name for f in fields(cls)}, cls


def test_train_help_shows_field_docs_and_defaults():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "220", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    rows = help_rows(result.output)
    for cls, name, option in option_fields():
        assert option in rows, option
        assert doc(cls, name) in rows[option], (option, rows[option])
        if name == "out_dir":
            assert "[required]" in rows[option]
            continue
        value = default(cls, name)
        if isinstance(value, bool):
            assert "[default: " in rows[option], option
        elif value is not None:
            assert f"[default: {value}]" in rows[option], (option, rows[option])
    assert "twice the rank" in rows["--lora-alpha"]


def test_train_defaults_are_the_dataclass_defaults(monkeypatch, tmp_path):
    import instructrec.training.trainer as trainer

    seen = []

    def fake_train(model, instructions, settings, kind=None, valid=None, item_table=None):
        assert item_table is None  # no item tokens unless --item-tokens names a retriever
        seen.append(settings)
        return TrainResult(settings.out_dir, 0, None, None, {})

    monkeypatch.setattr(trainer, "train", fake_train)
    base = ["train", "--instructions", str(tmp_path), "--out", str(tmp_path / "o")]
    assert runner.invoke(app, base).exit_code == 0
    assert seen[-1] == TrainSettings(out_dir=str(tmp_path / "o"))
    assert seen[-1].effective_lora_alpha == 32 and seen[-1].effective_learning_rate == 5e-5
    ok = runner.invoke(app, [*base, "--lora", "--lora-r", "4", "--lora-targets", "q_proj, v_proj", "--no-chat-template",
                             "--gpu-pad-multiple", "0", "--lora-learning-rate", "1e-3"])
    assert ok.exit_code == 0, ok.output
    s = seen[-1]
    assert (s.lora_targets, s.effective_lora_alpha, s.effective_learning_rate) == (["q_proj", "v_proj"], 8, 1e-3)
    assert s.prompt.use_chat_template is False and s.gpu_pad_multiple == 0
    bad = runner.invoke(app, [*base, "--precision", "fp64"])
    assert isinstance(bad.exception, DataError) and "precision must be one of" in str(bad.exception)
