"""`instructrec data ...` end to end through the real entry point: exit codes and one-line errors."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest
from data_formats import grid_reviews, run_cli, write_lines

from instructrec.data import Dataset


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_prepare_and_stats(cli, amazon2018_dir, tmp_path):
    out = tmp_path / "ds"
    result = cli("data", "prepare", "--source", "amazon2018", "--path", str(amazon2018_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert Dataset.load(out).counts() == {"users": 6, "items": 6, "interactions": 36, "reviews": 36}
    stats = cli("data", "stats", str(out))
    assert stats.returncode == 0 and "interactions" in stats.stdout and "36" in stats.stdout


def test_on_error_fail_then_skip(cli, amazon2018_dir, tmp_path):
    path = amazon2018_dir / "Toys_5.json.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines.insert(3, '{"reviewerID": "broken", ')
    write_lines(path, lines)
    out = tmp_path / "ds"
    args = ["data", "prepare", "--source", "amazon2018", "--path", str(path), "--out", str(out)]
    assert_one_line_error(cli(*args), "Toys_5.json.gz:4:", "--on-error skip")
    assert not out.exists()
    result = cli(*args, "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 malformed line" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["filters"]["lines"]["skipped_lines"] == {"Toys_5.json.gz": 1}
    assert manifest["counts"]["interactions"] == 36


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "latin1", "wrong_columns", "not_a_dataset"])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, case):
    path = tmp_path / "Toys_5.json.gz"
    data = "".join(json.dumps(r) + "\n" for r in grid_reviews()).encode()
    expect = {"missing": "does not exist", "empty": "is empty", "truncated": "truncated or corrupt",
              "latin1": "not UTF-8", "wrong_columns": "missing required field(s) ['reviewerID', 'asin']",
              "not_a_dataset": "does not exist"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(gzip.compress(data)[:-30])
    elif case == "latin1":
        path.write_bytes(gzip.compress(data + '{"reviewerID": "caf\u00e9", "asin": "x"}\n'.encode("latin-1")))
    elif case == "wrong_columns":
        path.write_bytes(gzip.compress(b'{"user": "u", "item": "i"}\n'))
    if case == "not_a_dataset":
        result = cli("data", "stats", str(tmp_path / "nothing"))
    else:
        result = cli("data", "prepare", "--source", "amazon2018", "--path", str(path), "--out", str(tmp_path / "o"))
    assert_one_line_error(result, expect)
    assert not (tmp_path / "o").exists()


def test_prepare_failure_keeps_the_previous_dataset(cli, amazon2018_dir, tmp_path):
    out = tmp_path / "ds"
    base = ["data", "prepare", "--source", "amazon2018", "--out", str(out)]
    assert cli(*base, "--path", str(amazon2018_dir)).returncode == 0
    before = (out / "interactions.parquet").read_bytes()
    bad = tmp_path / "bad" / "Toys_5.json.gz"
    bad.parent.mkdir()
    bad.write_bytes((amazon2018_dir / "Toys_5.json.gz").read_bytes()[:-20])
    assert_one_line_error(cli(*base, "--path", str(bad)), "truncated")
    assert (out / "interactions.parquet").read_bytes() == before
    assert Dataset.load(out).n_interactions == 36


def test_console_script_download_fails_fast_on_closed_loopback_port(tmp_path):
    """The installed entry point in a fresh interpreter: exit status 2, one line, in seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = run_cli("data", "download", "movielens-100k", "--out", str(tmp_path / "dl"),
                     "--mirror", f"http://127.0.0.1:{port}", "--connect-timeout", "2", timeout=60)
    assert_one_line_error(result, "by hand into", "ml-100k.zip")
    assert time.monotonic() - start < 45  # interpreter start-up included; the refusal itself is instant


def test_sources_and_k_core_options(cli, amazon2018_dir, tmp_path):
    out = tmp_path / "ds"
    result = cli("data", "prepare", "--source", "amazon2018", "--path", str(amazon2018_dir), "--out", str(out),
                 "--min-user", "0", "--min-item", "0", "--keep-untitled")
    assert result.returncode == 0, result.stderr
    assert Dataset.load(out).counts()["users"] == 7
    assert_one_line_error(cli("data", "prepare", "--source", "recbole", "--out", str(out)), "--path is required")


def test_out_that_is_not_a_dataset_is_refused_before_reading(cli, amazon2018_dir, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = cli("data", "prepare", "--source", "amazon2018", "--path", str(amazon2018_dir), "--out", str(out))
    assert_one_line_error(result, "is not a dataset folder")
    assert (out / "notes.txt").read_text() == "keep me"
