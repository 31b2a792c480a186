"""Evaluation reports: results JSON (every setting and seed), a Markdown table, a bar chart PNG,
and the per-user values (Parquet) behind every mean."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from instructrec.atomic import atomic_file, atomic_write
from instructrec.eval.protocol import EvalResult

CHART_METRICS = ("HR@1", "HR@3", "HR@5", "NDCG@3", "NDCG@5", "MRR")


def result_record(result: EvalResult) -> dict[str, Any]:
    return {"method": result.method, "task": result.task, "candidates": result.candidates,
            "users": int(len(result.rows)), "seconds": round(result.seconds, 3),
            "settings": result.settings, "metrics": result.summary}


def markdown_table(results: Sequence[EvalResult]) -> str:
    """One row per (method, task, candidates): mean ± 95% CI half-width of every metric."""
    if not results:
        return ""
    metrics: list[str] = []
    for r in results:
        metrics += [m for m in r.per_user if m not in metrics]
    head = ["method", "task", "candidates", "users", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        summ = r.summary
        cells = [r.method, r.task, r.candidates, f"{len(r.rows):,}"]
        for m in metrics:
            s = summ.get(m)
            cells.append(f"{s['mean']:.4f} ± {(s['ci_high'] - s['mean']):.4f}" if s else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: Sequence[EvalResult], path: str | Path | BinaryIO, title: str = "") -> Any:
    """Grouped bars (metrics on x, one bar per result) with 95% CI whiskers, as PNG (a path or a handle)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in CHART_METRICS if all(m in r.per_user for r in results)] or \
        list(results[0].per_user)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) + 0.4 * len(results)), 4))
    for i, r in enumerate(results):
        summ = r.summary
        means = [summ[m]["mean"] for m in metrics]
        err = [summ[m]["ci_high"] - summ[m]["mean"] for m in metrics]
        label = r.method if r.candidates in {res.candidates for res in results[:1]} else f"{r.method} ({r.candidates})"
        ax.bar(x + (i - (len(results) - 1) / 2) * width, means, width, yerr=err, capsize=2, label=label)
    ax.set_xticks(x, metrics)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean (95% CI)")
    ax.set_title(title)
    ax.legend(fontsize="small", ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
    return path if hasattr(path, "write") else Path(path)


def write_report(results: Sequence[EvalResult], out_dir: str | Path, settings: dict[str, Any],
                 title: str = "", extra_markdown: str = "") -> dict[str, Path]:
    """Write results.json, results.md, results.png and per_user.parquet into `out_dir`
    (`extra_markdown`, e.g. a paired-differences table, follows the results table)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "chart": out / "results.png",
             "per_user": out / "per_user.parquet"}
    doc = {"settings": settings, "results": [result_record(r) for r in results]}
    # every file atomically, results.json last: a killed run leaves the old report or the new one
    # (with a results.json that matches the files beside it once it is there)
    frames = []
    for r in results:
        frame = pd.DataFrame({"method": r.method, "task": r.task, "candidates": r.candidates,
                              "row": r.rows, "rank": r.ranks, **r.per_user})
        frames.append(frame)
    if frames:
        with atomic_file(paths["per_user"]) as tmp, open(tmp, "wb") as fh:
            pd.concat(frames, ignore_index=True).to_parquet(fh, index=False)
        with atomic_file(paths["chart"]) as tmp, open(tmp, "wb") as fh:
            bar_chart(results, fh, title)
    atomic_write(paths["markdown"], (f"## {title}\n\n" if title else "") + markdown_table(results)
                 + (f"\n{extra_markdown}" if extra_markdown else ""))
    atomic_write(paths["json"], json.dumps(doc, indent=2, default=_plain) + "\n")
    return paths


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
