"""The README's main job, as a smoke test: `instructrec quickstart --tiny` runs every stage; the
saved recommender, evaluated as a whole by `instructrec evaluate --recommender`, gives the
quickstart's own figures for its fused method on the same users."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from instructrec.cli.main import app


def test_quickstart_tiny_end_to_end(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "instructrec.cli.main", "quickstart", "--tiny", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "InstructRec quickstart" in proc.stdout and "instructrec serve --model" in proc.stdout
    assert "seconds per stage kind" in proc.stdout  # stage timings are printed
    assert "peak memory per stage kind (GB)" in proc.stdout  # and where the memory goes
    table = [line for line in proc.stdout.splitlines() if line[:1] in "┏┃┡│└" or line.startswith("  paired")]
    assert len(table) >= 14 and max(len(line) for line in table) <= 80  # fits an 80-column terminal
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stage_peak_rss_mb"]) >= {"data", "models", "results"}
    assert summary["stage_peak_rss_mb"]["models"] > 100  # MB: the model is resident while it trains
    methods = {(r["task"], r["method"]) for r in summary["results"]}
    for task in ("seqrec", "psearch-i2"):
        for method in ("popularity", "sasrec", "llm-zero-shot", "llm-tuned", "llm-tuned+sasrec"):
            assert (task, method) in methods
    assert all(0.0 <= r["HR@1"] <= r["HR@5"] <= 1.0 for r in summary["results"])
    for exp in ("seqrec", "psearch-i2"):
        for key in ("json", "markdown", "chart"):
            assert Path(summary["reports"][exp]["report"][key]).is_file()
        assert summary["reports"][exp]["paired"]
    assert (out / "recommender" / "settings.json").is_file()
    saved = json.loads((out / "recommender" / "settings.json").read_text())
    assert set(saved["fusion"]) == {"P1,I0,T3", "P1,I2,T3"}  # one weight per task
    # A second run reuses every finished stage and gives the same numbers.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((out / "summary.json").read_text())
    assert second["results"] == summary["results"]
    assert {s["status"] for s in second["stages"]} == {"reused"}

    # What is evaluated is what is served: the recommender as a whole = the quickstart's fused rows.
    for exp, task in (("seqrec", "seqrec"), ("psearch-i2", "psearch-i2")):
        fused = next(r for r in summary["results"] if r["experiment"] == exp and r["method"] == "llm-tuned+sasrec")
        res = CliRunner().invoke(app, ["evaluate", "--recommender", str(out / "recommender"), "--method",
                                       "recommender", "--task", task, "--users", str(fused["users"]),
                                       "--out", str(tmp_path / f"eval-{exp}"), "--models", str(tmp_path / "m")])
        assert res.exit_code == 0, res.output
        evaluated = json.loads((tmp_path / f"eval-{exp}" / "results.json").read_text())["results"][0]["metrics"]
        for metric in ("HR@1", "HR@5", "NDCG@5", "MRR"):
            assert abs(evaluated[metric]["mean"] - fused[metric]) < 1e-9, (exp, metric)


def test_quickstart_trains_its_steps_in_small_passes():
    """Memory: a step's examples run as accumulated passes of at most `MICRO_BATCH` (the
    activations of one 8-prompt pass made most of a 9.6 GB peak), same examples per step, and the
    built-in recipe run without the quickstart's flags trains the same way."""
    from instructrec.pipeline import MICRO_BATCH, QuickstartSettings, quickstart_recipe

    for per_step, want in ((8, (1, 8)), (3, (1, 3)), (1, (1, 1))):
        train = quickstart_recipe(QuickstartSettings(batch_size=per_step)).models["tuned"].train
        assert (train["batch_size"], train["grad_accum"]) == want
        assert train["batch_size"] <= MICRO_BATCH and train["batch_size"] * train["grad_accum"] == per_step
    from instructrec.experiments.recipe import load_recipe

    plain = load_recipe("builtin:quickstart").models["tuned"].train
    default = quickstart_recipe(QuickstartSettings()).models["tuned"].train
    assert (plain["batch_size"], plain["grad_accum"]) == (default["batch_size"], default["grad_accum"])
