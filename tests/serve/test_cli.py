"""`instructrec recommend` and `serve`'s start-up checks, with the stub recommender in place of a saved one."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from typer.testing import CliRunner

from instructrec.cli import main as cli_main
from instructrec.cli import serve as serve_cli
from instructrec.errors import InstructRecError, ModelError
from instructrec.serve.protocol import load_recommender, split_history

runner = CliRunner()


@pytest.fixture()
def saved(stub, tmp_path, monkeypatch):
    """`--model DIR` resolves to the stub (the real loader is tested separately below)."""
    monkeypatch.setattr(serve_cli, "load_recommender", lambda path: stub)
    return str(tmp_path)


def test_recommend_prints_ranked_table_aspects_and_template(saved):
    result = runner.invoke(cli_main.app, ["recommend", "--model", saved, "--user", "196",
                                          "I want a star wars adventure", "-k", "3", "--show-instruction"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "rank" in out and "title" in out and "score" in out
    assert "Star Wars" in out
    assert "aspects P1,I2,T3" in out and "template stub-popularity" in out and "specific_intention" in out
    assert "a star wars adventure" in out


def test_recommend_json_for_scripts(saved, stub):
    result = runner.invoke(cli_main.app, ["recommend", "-m", saved, "--history", "Usual Suspects, The,50",
                                          "--history", "Toy Story", "--json", "-k", "4", "a comedy"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["items"]) == 4 and data["aspects"].startswith("P1,")
    titles = {it["title"] for it in data["items"]}
    assert not titles & {"Usual Suspects, The", "Star Wars", "Toy Story"}  # history items are excluded
    assert "Usual Suspects, The" in data["instruction"]
    assert set(data["items"][0]) >= {"item_id", "title", "score", "llm_score", "retrieval_score"}


def test_titles_print_as_text_not_terminal_markup(saved):
    from stub_recommender import MARKUP_TITLE

    result = runner.invoke(cli_main.app, ["recommend", "-m", saved, "-k", "1", "rich markup oops"])
    assert result.exit_code == 0, result.output
    assert MARKUP_TITLE in result.output


def test_split_history_keeps_titles_with_commas(serve_dataset):
    assert split_history(["Usual Suspects, The,50", "Toy Story"], serve_dataset) == ["Usual Suspects, The", "50", "Toy Story"]
    assert split_history(["nonsense, 50"], serve_dataset) == ["nonsense", "50"]


def test_unknown_user_and_conflicting_options_are_user_errors(saved):
    result = runner.invoke(cli_main.app, ["recommend", "-m", saved, "--user", "ghost", "x"])
    assert isinstance(result.exception, InstructRecError) and "--history" in str(result.exception)
    result = runner.invoke(cli_main.app, ["recommend", "-m", saved, "--user", "196", "--history", "50", "x"])
    assert isinstance(result.exception, InstructRecError) and "not both" in str(result.exception)


def test_cli_turns_a_missing_model_into_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["instructrec", "recommend", "--model", str(tmp_path / "none"), "x"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and "quickstart" in err and "Traceback" not in err


def test_load_recommender_without_saved_folder_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_recommender(tmp_path / "missing")


def test_serve_refuses_a_busy_port_before_loading_the_model(saved, monkeypatch):
    monkeypatch.setattr(serve_cli, "load_recommender", lambda path: pytest.fail("loaded the model"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli_main.app, ["serve", "--model", saved, "--port", str(port)])
    assert isinstance(result.exception, InstructRecError) and "--port" in str(result.exception)


def test_serve_rejects_bad_cors_origin(saved):
    result = runner.invoke(cli_main.app, ["serve", "--model", saved, "--cors-origin", "example.org"])
    assert isinstance(result.exception, InstructRecError) and "scheme and host" in str(result.exception)


def test_serve_loads_once_binds_loopback_and_passes_settings(saved, stub, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    loads, runs = [], []
    monkeypatch.setattr(serve_cli, "load_recommender", lambda path: loads.append(path) or stub)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: runs.append((app, kw)))
    result = runner.invoke(cli_main.app, ["serve", "--model", saved, "--port", "0", "--max-k", "7",
                                          "--cors-origin", "https://example.org"])
    assert result.exit_code == 0, result.output
    assert len(loads) == 1 and len(runs) == 1
    app, kw = runs[0]
    assert kw["host"] == "127.0.0.1" and kw["workers"] == 1
    with TestClient(app) as c:
        assert c.get("/healthz").json()["limits"]["max_k"] == 7
        assert c.get("/healthz", headers={"Origin": "https://example.org"}).headers[
            "access-control-allow-origin"] == "https://example.org"


def test_recommend_refine_sends_the_earlier_turns_back(saved, stub):
    result = runner.invoke(cli_main.app, ["recommend", "-m", saved, "--user", "196", "-k", "3", "a star wars film",
                                          "--refine", "with an empire", "--refine", "and jedi"])
    assert result.exit_code == 0, result.output
    assert "turn 1: a star wars film" in result.output and "turn 3: and jedi" in result.output
    assert stub.calls == 3  # one call per turn, each carrying the turns before it
