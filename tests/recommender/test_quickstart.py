"""The README's main job, as a smoke test: `instructrec quickstart --tiny` runs every stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quickstart_tiny_end_to_end(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "instructrec.cli.main", "quickstart", "--tiny", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "InstructRec quickstart" in proc.stdout and "instructrec serve --model" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    methods = {(r["task"], r["method"]) for r in summary["results"]}
    for task in ("seqrec", "psearch-i2"):
        for method in ("popularity", "sasrec", "llm-zero-shot", "llm-tuned", "llm-tuned+sasrec"):
            assert (task, method) in methods
    assert all(0.0 <= r["HR@1"] <= r["HR@5"] <= 1.0 for r in summary["results"])
    for key in ("json", "markdown", "chart"):
        assert Path(summary["report"][key]).is_file()
    assert (out / "recommender" / "settings.json").is_file()
    # A second run reuses every finished stage and gives the same numbers.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["results"] == summary["results"]
