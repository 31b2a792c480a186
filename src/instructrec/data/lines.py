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
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from instructrec.errors import DataError

log = logging.getLogger(__name__)

_PROGRESS_EVERY = 4096
"""Update the progress bar every this many lines (tqdm calls are not free at 1M lines)."""
_BLANK_START = (b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c")


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


def iter_lines(path: Path, *, desc: str | None = None) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line bytes) of a plain or gzip file (detected by magic bytes), with a
    progress bar over the (compressed) bytes. Blank lines are skipped. A truncated or corrupt
    gzip stream is always an error: silently keeping part of a file would change the data."""
    path = check_file(path, "input file")
    size = path.stat().st_size
    raw = path.open("rb")
    gz = _is_gzip(path)
    # A big read buffer: iterating a GzipFile line by line is dominated by per-call overhead.
    stream: io.BufferedIOBase = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20) if gz else raw
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=desc or path.name, disable=None, leave=False)
    lineno = 0
    done = 0
    try:
        with raw, stream:
            for lineno, line in enumerate(stream, start=1):  # noqa: B007 - lineno used after the loop
                if lineno % _PROGRESS_EVERY == 0:
                    pos = raw.tell()
                    bar.update(pos - done)
                    done = pos
                # cheap test first: a record line starts with "{", only then look for a blank one
                if line[:1] not in _BLANK_START or line.strip():
                    yield lineno, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(
            f"{path}:{lineno + 1}: the gzip stream is truncated or corrupt ({exc}); download the file again."
        ) from None
    finally:
        bar.update(size - done)
        bar.close()
    if lineno == 0:
        raise DataError(f"input file {path} has no lines (empty after decompression).")


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


def read_records(path: Path, errors: LineErrors, required: tuple[str, ...], *,
                 desc: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed record) of a JSON-lines / literal-lines file, for the records that
    carry every `required` field; other lines go to the `errors` policy."""
    good = 0
    for lineno, line in iter_lines(path, desc=desc):
        try:
            record = parse_record(line)
        except ValueError as exc:
            errors.bad_line(path, lineno, str(exc))
            continue
        for key in required:  # a plain loop: no allocation on the per-line hot path
            if record.get(key) is None:
                break
        else:
            good += 1
            yield lineno, record
            continue
        missing = [k for k in required if record.get(k) is None]
        errors.bad_line(
            path, lineno,
            f"missing required field(s) {missing} (found {sorted(record)[:12]}); "
            "is this the right kind of file for this source?",
        )
    if good == 0:
        raise DataError(f"{path}: no usable lines ({errors.skipped.get(path.name, 0)} skipped); "
                        f"check that it is the right file.")

