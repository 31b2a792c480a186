"""`instructrec retrieve fit` and `instructrec evaluate` end to end on the synthetic data set."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from instructrec.cli import main as cli_main
from instructrec.errors import InstructRecError

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(synthetic_seq, tmp_path_factory):
    return str(synthetic_seq.save(tmp_path_factory.mktemp("synth") / "data"))


def test_fit_then_evaluate_reuses_saved_models_and_candidates(data_dir, tmp_path):
    models = str(tmp_path / "models")
    res = runner.invoke(cli_main.app, ["retrieve", "fit", "--data", data_dir, "--method", "popularity,bpr",
                                       "--models", models, "--param", "bpr.iterations=20",
                                       "--param", "bpr.progress=false"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "report"
    cands = tmp_path / "cands.npz"
    res = runner.invoke(cli_main.app, [
        "evaluate", "--data", data_dir, "--method", "popularity,bpr", "--candidates", "random:9", "--users", "100",
        "--seed", "3", "--full-ranking", "--models", models, "--out", str(out), "--save-candidates", str(cands)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["seed"] == 3 and doc["settings"]["candidate_set"]["users"] == 100
    assert [(r["method"], r["candidates"]) for r in doc["results"]] == [
        ("popularity", "random:9"), ("popularity", "full"), ("bpr", "random:9"), ("bpr", "full")]
    first = {r["method"]: r["metrics"]["HR@1"]["mean"] for r in doc["results"] if r["candidates"] != "full"}
    assert (out / "results.png").exists() and "| bpr |" in (out / "results.md").read_text()
    # The saved candidate set gives the same figures.
    res = runner.invoke(cli_main.app, ["evaluate", "--data", data_dir, "--method", "popularity,bpr", "--seed", "3",
                                       "--candidates", f"file:{cands}", "--models", models, "--out", str(out)])
    assert res.exit_code == 0, res.output
    again = {r["method"]: r["metrics"]["HR@1"]["mean"] for r in json.loads((out / "results.json").read_text())["results"]}
    assert again == first


def test_groups_and_hard_candidates(data_dir, tmp_path):
    models = str(tmp_path / "models")
    res = runner.invoke(cli_main.app, ["evaluate", "--data", data_dir, "--method", "bm25", "--users", "50",
                                       "--candidates", "hard:popularity:9", "--models", models,
                                       "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli_main.app, ["evaluate", "--data", data_dir, "--method", "popularity", "--users", "50",
                                       "--candidates", "groups:100", "--models", models, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert doc["results"][0]["settings"]["groups"] == 10


def test_bad_input_is_one_line_and_exit_2(data_dir, monkeypatch, capsys):
    res = runner.invoke(cli_main.app, ["evaluate", "--data", data_dir, "--candidates", "random:x"])
    assert isinstance(res.exception, InstructRecError)
    monkeypatch.setattr(sys, "argv", ["instructrec", "evaluate", "--data", data_dir, "--method", "nope",
                                      "--users", "5"])
    with pytest.raises(SystemExit) as info:
        cli_main.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method" in err and "Traceback" not in err


def test_fit_checkpoints_torch_models_and_cleans_up(data_dir, tmp_path):
    models = tmp_path / "models"
    res = runner.invoke(cli_main.app, ["retrieve", "fit", "--data", data_dir, "--method", "gru4rec",
                                       "--models", str(models), "--param", "gru4rec.epochs=2",
                                       "--param", "gru4rec.hidden=8", "--param", "gru4rec.progress=false"])
    assert res.exit_code == 0, res.output
    settings = json.loads((models / "gru4rec" / "settings.json").read_text())["settings"]
    assert settings["checkpoint"] == str(models / ".gru4rec.checkpoint.pt")
    assert not (models / ".gru4rec.checkpoint.pt").exists()  # removed once the model is saved
