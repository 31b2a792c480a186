"""The line reader: JSON and Python-literal lines, gzip, and every kind of bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from data_formats import write_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructrec.data import lines as lines_module
from instructrec.data.lines import LineErrors, OnError, parse_record, read_records
from instructrec.errors import DataError


def test_parse_json_and_python_literal():
    assert parse_record(b'{"asin": "B1", "price": 1.5}') == {"asin": "B1", "price": 1.5}
    # the 2014 metadata dumps: str(dict) with single quotes, True/None and nested lists
    line = b"{'asin': 'B2', 'categories': [['Games', 'PC']], 'sold': True, 'brand': None}"
    assert parse_record(line) == {"asin": "B2", "categories": [["Games", "PC"]], "sold": True, "brand": None}


def test_literal_parsing_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    line = f"__import__('pathlib').Path({str(marker)!r}).touch()".encode()
    with pytest.raises(ValueError, match="neither JSON nor a Python literal"):
        parse_record(line)
    assert not marker.exists()
    with pytest.raises(ValueError, match="one object per line"):
        parse_record(b"[1, 2]")


def test_non_utf8_line_is_reported():
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_record('{"title": "caf\u00e9"}'.encode("latin-1"))


def _records(path, on_error=OnError.fail, required=("asin",)):
    errors = LineErrors(on_error)
    return [r for _, r in read_records(path, errors, required)], errors


@pytest.mark.parametrize("name", ["x.json", "x.json.gz"])
def test_plain_and_gzip_with_blank_lines(tmp_path, name):
    path = write_lines(tmp_path / name, ['{"asin": "A"}', "", "   ", '{"asin": "B"}'])
    records, errors = _records(path)
    assert [r["asin"] for r in records] == ["A", "B"]
    assert errors.total_skipped == 0


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "reviews.json"  # gzip data without the .gz suffix
    path.write_bytes(gzip.compress(b'{"asin": "A"}\n'))
    assert _records(path)[0] == [{"asin": "A"}]


def test_malformed_line_fails_with_file_and_line(tmp_path):
    path = write_lines(tmp_path / "r.json", ['{"asin": "A"}', '{"asin": "B"', '{"asin": "C"}'])
    with pytest.raises(DataError, match=r"r\.json:2: .*--on-error skip"):
        _records(path)


def test_skip_counts_bad_lines(tmp_path):
    path = write_lines(tmp_path / "r.json", ['{"asin": "A"}', "not json", '{"title": "no asin"}', "[]",
                                             '{"asin": "D"}'])
    records, errors = _records(path, OnError.skip)
    assert [r["asin"] for r in records] == ["A", "D"]
    assert errors.skipped == {"r.json": 3}
    assert any("r.json:2: neither JSON nor a Python literal" in e for e in errors.examples)
    assert any("r.json:3: missing required field(s) ['asin']" in e for e in errors.examples)
    assert any("r.json:4: expected one object per line" in e for e in errors.examples)
    assert errors.as_filter()["skipped_lines"] == {"r.json": 3}


def test_all_lines_bad_is_an_error_even_when_skipping(tmp_path):
    path = write_lines(tmp_path / "r.json", ['{"other": 1}', '{"other": 2}'])
    with pytest.raises(DataError, match="no usable lines"):
        _records(path, OnError.skip)


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _records(tmp_path / "absent.json.gz")
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        _records(tmp_path / "empty.json")
    (tmp_path / "empty.json.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="no lines"):
        _records(tmp_path / "empty.json.gz")
    with pytest.raises(DataError, match="not a file"):
        _records(tmp_path)


def test_truncated_gzip_is_an_error_even_when_skipping(tmp_path):
    data = gzip.compress("".join(json.dumps({"asin": f"A{i}", "text": "x" * 50}) + "\n"
                                 for i in range(2000)).encode())
    path = tmp_path / "r.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        _records(path, OnError.skip)


def test_corrupt_gzip_is_an_error(tmp_path):
    data = bytearray(gzip.compress(b'{"asin": "A"}\n' * 1000))
    data[20:40] = b"\x00" * 20
    path = tmp_path / "r.json.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated or corrupt"):
        _records(path)


def test_latin1_file_fails_then_skips(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes('{"asin": "A"}\n{"asin": "B", "title": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"r\.json:2: not UTF-8"):
        _records(path)
    records, errors = _records(path, OnError.skip)
    assert records == [{"asin": "A"}] and errors.total_skipped == 1


line_kinds = st.lists(st.sampled_from(["json", "literal", "blank", "bad", "no_asin"]), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=line_kinds, chunk=st.integers(1, 64), gz=st.booleans(), final_newline=st.booleans())
def test_chunk_boundaries_keep_records_and_line_numbers(tmp_path_factory, monkeypatch, kinds, chunk, gz,
                                                        final_newline):
    """Whatever the chunk size, every line is parsed once and errors name the right line."""
    monkeypatch.setattr(lines_module, "_CHUNK", chunk)
    text = {"json": '{{"asin": "J{n}", "t": "caf\u00e9 {n}"}}', "literal": "{{'asin': 'L{n}', 'ok': True}}",
            "blank": "  ", "bad": '{{"asin": "B{n}"', "no_asin": '{{"title": "T{n}"}}'}
    kinds = [*kinds, "end"]  # at least one usable line
    text["end"] = '{{"asin": "END"}}'
    lines = [text[kind].format(n=n) for n, kind in enumerate(kinds, start=1)]
    data = ("\n".join(lines) + ("\n" if final_newline else "")).encode()
    path = tmp_path_factory.mktemp("chunks") / "r.json"
    path.write_bytes(gzip.compress(data) if gz else data)
    errors = LineErrors(OnError.skip)
    got = list(read_records(path, errors, ("asin",)))
    prefix = {"json": "J", "literal": "L"}
    want = [(n, "END" if k == "end" else f"{prefix[k]}{n}") for n, k in enumerate(kinds, start=1)
            if k in ("json", "literal", "end")]
    assert [(lineno, r["asin"]) for lineno, r in got] == want
    bad = [n for n, k in enumerate(kinds, start=1) if k in ("bad", "no_asin")]
    assert errors.total_skipped == len(bad)
    named = [int(e.rsplit("r.json:", 1)[1].split(":")[0]) for e in errors.examples]
    assert sorted(named) == bad[:5] if len(bad) <= 5 else set(named) <= set(bad)
