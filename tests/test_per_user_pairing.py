"""benchmarks/per_user.py: per-user ranks kept from one run pair with another run's by user row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from instructrec.eval.protocol import EvalResult
from instructrec.experiments.runner import save_result

_SPEC = importlib.util.spec_from_file_location(
    "per_user", Path(__file__).resolve().parents[1] / "benchmarks" / "per_user.py")
per_user = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(per_user)


def _result(method: str, rows, ranks, candidates: str = "random:9") -> EvalResult:
    ranks = np.asarray(ranks)
    return EvalResult(method, "seqrec", candidates, np.asarray(rows), ranks,
                      {"HR@1": (ranks == 1).astype(float), "MRR": 1.0 / ranks}, 0.1)


def _kept(tmp_path: Path, name: str, results: list[EvalResult]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for res in results:
        save_result(folder / f"{res.method}-0.json", res)
        (folder / f"{res.method}-0.json.stage.json").write_text("{}")  # the runner's completion marker
    per_user.keep(folder, tmp_path / f"{name}.parquet")
    return tmp_path / f"{name}.parquet"


def test_pairs_by_user_row_across_runs_and_checks_the_control(tmp_path):
    pop = _result("popularity", [3, 1, 2], [2, 1, 5])
    first = _kept(tmp_path, "first", [pop, _result("llm", [1, 2, 3], [1, 4, 1])])
    # the second run lists its users in another order: pairing goes by row, not by position
    second = _kept(tmp_path, "second", [_result("popularity", [2, 3, 1], [5, 2, 1]), _result("llm2", [3, 2, 1], [1, 1, 2])])
    out = per_user.pair(f"{second}:llm2", f"{first}:llm", check="popularity")
    # llm2 - llm per row: row 1: 0-1, row 2: 1-0, row 3: 1-1 -> mean 0 for HR@1
    assert out["users"] == 3
    assert out["diff"]["HR@1"]["mean"] == pytest.approx(0.0)
    mrr = np.mean([1 / 2 - 1, 1 - 1 / 4, 1 - 1])
    assert out["diff"]["MRR"]["mean"] == pytest.approx(mrr, abs=1e-4)


def test_keeps_only_finished_results(tmp_path):
    kept = _kept(tmp_path, "run", [_result("popularity", [1, 2], [1, 2])])
    save_result(tmp_path / "run" / "llm-0.json", _result("llm", [1, 2], [1, 1]))  # no record: cut short
    per_user.keep(tmp_path / "run", kept)
    with pytest.raises(SystemExit, match="no method 'llm'"):
        per_user.pair(f"{kept}:llm", f"{kept}:popularity")


def test_refuses_other_users_or_candidates(tmp_path):
    first = _kept(tmp_path, "first", [_result("popularity", [1, 2], [1, 2]), _result("llm", [1, 2], [1, 1])])
    moved = _kept(tmp_path, "moved", [_result("popularity", [1, 2], [3, 2]), _result("llm", [1, 2], [2, 1])])
    with pytest.raises(SystemExit, match="not the same users"):
        per_user.pair(f"{moved}:llm", f"{first}:llm", check="popularity")
    hard = _kept(tmp_path, "hard", [_result("llm", [1, 2], [2, 1], candidates="hard:sasrec:9")])
    with pytest.raises(SystemExit, match="different candidate draws"):
        per_user.pair(f"{hard}:llm", f"{first}:llm")
