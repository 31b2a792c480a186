"""Writers of small input files in the real formats (the tests never ship data files)."""

from __future__ import annotations

import contextlib
import gzip
import io
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def write_lines(path: Path, lines: Iterable[str], *, gz: bool | None = None) -> Path:
    """Write text lines, gzip-compressed when the name ends with .gz (or `gz` says so)."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if gz if gz is not None else path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def review2018(user: str, item: str, t: int, rating: float = 5.0, text: str = "fine", summary: str = "ok") -> dict:
    return {"overall": rating, "verified": True, "reviewTime": "01 1, 2015", "reviewerID": user, "asin": item,
            "reviewerName": "x", "reviewText": text, "summary": summary, "unixReviewTime": t,
            "style": {"Platform:": " PC"}}


def meta2018(item: str, title: str | None, **extra) -> dict:
    record = {"asin": item, "category": ["Video Games", "PC"], "description": ["Line one.", "Line <b>two</b>."],
              "brand": "Maker", "price": "$12.99", "also_buy": [], "rank": "1 in Games"}
    if title is not None:
        record["title"] = title
    record.update(extra)
    return record


def grid_reviews(n_users: int = 6, n_items: int = 6, start: int = 1_500_000_000) -> list[dict]:
    """Every user reviews every item once, at increasing times: a 6x6 grid survives 5-core."""
    out = []
    for u in range(n_users):
        for i in range(n_items):
            out.append(review2018(f"U{u}", f"I{i}", start + 100 * u + (i * 7 + u) % n_items))
    return out


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real `instructrec` entry point in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "instructrec.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def invoke_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `instructrec.cli.main.main` in this process (the console script's exact code path,
    minus the interpreter start-up that importing every CLI module costs) and capture its output."""
    from instructrec.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["instructrec", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
