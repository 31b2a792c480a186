"""Reading line-oriented files (JSON lines, Python-literal lines), plain or gzip, robustly.

Every raw review/metadata dump we read is one record per line. This module owns what they have in
common: opening plain or gzip files, a progress bar over the bytes read, parsing each line (strict
JSON via orjson; the 2014 Amazon dumps' Python-literal lines via `ast.literal_eval`, never `eval`),
and the `--on-error fail|skip` policy with `file:line` in every message.
"""

from __future__ import annotations

import ast
import gzip
import io
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from instructrec.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 4 << 20
"""Bytes of (decompressed) input read and split at a time."""

try:  # ISA-L inflates gzip about 3x faster than zlib; the standard library is the fallback
    from isal import igzip_threaded as _igzip_threaded
    from isal.isal_zlib import error as _isal_error

    _GZIP_ERRORS: tuple[type[BaseException], ...] = (_isal_error, gzip.BadGzipFile)

    def _gzip_open(raw: Any) -> io.BufferedIOBase:
        # one background thread inflates the next block while this one parses (ISA-L frees the GIL)
        return _igzip_threaded.open(raw, "rb", threads=1)
except ImportError:  # pragma: no cover - isal is a declared dependency
    _GZIP_ERRORS = (gzip.BadGzipFile,)

    def _gzip_open(raw: Any) -> io.BufferedIOBase:
        return gzip.GzipFile(fileobj=raw, mode="rb")


class OnError(str, Enum):
    """What to do with a malformed line."""

    fail = "fail"
    skip = "skip"


@dataclass
class LineErrors:
    """The error policy for malformed lines and the record of what was skipped."""

    on_error: OnError = OnError.fail
    """`fail`: stop at the first malformed line; `skip`: count it, log it and go on."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Skipped line count per file name."""
    examples: list[str] = field(default_factory=list)
    """The first few skipped lines' messages (`file:line: reason`), for the log and manifest."""

    def bad_line(self, path: Path, lineno: int, reason: str) -> None:
        """Raise (fail) or record (skip) one malformed line."""
        message = f"{path}:{lineno}: {reason}"
        if OnError(self.on_error) is OnError.fail:
            raise DataError(f"{message} (use --on-error skip to skip malformed lines)")
        self.skipped[path.name] = self.skipped.get(path.name, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(message)
            log.warning("skipped %s", message)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_filter(self) -> dict[str, Any]:
        """The manifest's record of the policy and of what it skipped."""
        return {"on_error": OnError(self.on_error).value, "skipped_lines": dict(self.skipped),
                "skipped_examples": list(self.examples)}


def check_file(path: Path, what: str) -> Path:
    """A readable, non-empty file or one clear error."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist; check the path.")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a file.")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path} is empty.")
    return path


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def iter_line_chunks(path: Path, *, desc: str | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines) chunk by chunk from a plain or gzip file (detected by its
    magic bytes), with a progress bar over the file's bytes. Lines keep no newline; blank lines
    stay in (so positions give line numbers). A truncated or corrupt gzip stream is always an
    error: silently keeping part of a file would change the data.

    Reading megabyte chunks and splitting them in C is several times cheaper per line than
    iterating a (gzip) file object line by line, which matters at millions of lines.
    """
    path = check_file(path, "input file")
    size = path.stat().st_size
    raw = path.open("rb")
    stream: io.BufferedIOBase = _gzip_open(raw) if _is_gzip(path) else raw
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=desc or path.name, disable=None, leave=False)
    first = 1
    done = 0
    tail = b""
    try:
        with raw, stream:
            while chunk := stream.read(_CHUNK):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                if lines:
                    yield first, lines
                    first += len(lines)
                pos = raw.tell()
                bar.update(pos - done)
                done = pos
    except (EOFError, OSError, zlib.error, *_GZIP_ERRORS) as exc:
        raise DataError(
            f"{path}: the gzip stream is truncated or corrupt after line {first - 1:,} ({exc}); "
            "download the file again."
        ) from None
    finally:
        bar.close()
    if tail:
        yield first, [tail]
        first += 1
    if first == 1:
        raise DataError(f"input file {path} has no lines (empty after decompression).")


def iter_lines(path: Path, *, desc: str | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line bytes) of a plain or gzip file; blank lines are skipped."""
    for first, lines in iter_line_chunks(path, desc=desc):
        for k, line in enumerate(lines):
            if line.strip():
                yield first + k, line


def parse_record(line: bytes) -> dict[str, Any]:
    """One line -> a dict: strict JSON first; if that fails, a Python literal (the 2014 Amazon
    dumps are `str(dict)` lines). Raises ValueError with a short reason otherwise."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as json_exc:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"not UTF-8 text (byte {exc.start}); convert the file to UTF-8 (e.g. iconv -t utf-8)"
            ) from None
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise ValueError(f"neither JSON nor a Python literal ({json_exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected one object per line, found {type(value).__name__}")
    return value


def read_record_batches(path: Path, errors: LineErrors, required: tuple[str, ...], *,
                        desc: str | None = None) -> Iterator[tuple[Sequence[int], list[dict[str, Any]]]]:
    """(line numbers, records) chunk by chunk from a JSON-lines / literal-lines file: the records
    that carry every `required` field; malformed lines go to `errors`, blank lines are dropped.

    The fast path parses a whole chunk with `map(orjson.loads, ...)`; only a chunk where that
    fails (a malformed, blank or Python-literal line) is parsed line by line.
    """
    good = 0
    for first, lines in iter_line_chunks(path, desc=desc):
        linenos: Sequence[int] = range(first, first + len(lines))
        try:
            records = list(map(orjson.loads, lines))
            if not all(type(r) is dict for r in records):
                raise ValueError("not an object")
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            linenos, records = _parse_slowly(path, first, lines, errors)
        if required:
            bad = [k for k, r in enumerate(records) if None in map(r.get, required)]
            if bad:
                linenos, records = _drop_incomplete(path, linenos, records, bad, errors, required)
        good += len(records)
        if records:
            yield linenos, records
    if good == 0:
        raise DataError(f"{path}: no usable lines ({errors.skipped.get(path.name, 0)} skipped); "
                        "check that it is the right file.")


def _parse_slowly(path: Path, first: int, lines: list[bytes], errors: LineErrors,
                  ) -> tuple[list[int], list[dict[str, Any]]]:
    linenos, records = [], []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line))
            linenos.append(first + k)
        except ValueError as exc:
            errors.bad_line(path, first + k, str(exc))
    return linenos, records


def _drop_incomplete(path: Path, linenos: Sequence[int], records: list[dict[str, Any]], bad: list[int],
                     errors: LineErrors, required: tuple[str, ...]) -> tuple[list[int], list[dict[str, Any]]]:
    for k in bad:
        missing = [f for f in required if records[k].get(f) is None]
        errors.bad_line(path, linenos[k], f"missing required field(s) {missing} (found {sorted(records[k])[:12]}); "
                                          "is this the right kind of file for this source?")
    drop = set(bad)
    keep = [k for k in range(len(records)) if k not in drop]
    return [linenos[k] for k in keep], [records[k] for k in keep]


def read_records(path: Path, errors: LineErrors, required: tuple[str, ...], *,
                 desc: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) one by one (see `read_record_batches`)."""
    for linenos, batch in read_record_batches(path, errors, required, desc=desc):
        yield from zip(linenos, batch)
