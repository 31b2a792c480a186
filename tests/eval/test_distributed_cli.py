"""Two CPU processes (gloo) write what one process writes: `instructrec evaluate` under
`accelerate launch` and `instructrec instructions build` (local LLM teacher) under `torchrun`.

On a CPU-only machine `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate
runs several CPU processes only through mpirun); `--multi_gpu --num_processes 2` starts two
torch-elastic workers, which on a machine without CUDA join a gloo group on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GLOO_ABORT = "terminate called without an active exception"
"""A rank of a two-process gloo launch on this 2-core box now and then dies with this C++ abort
(SIGABRT) in the middle of a run (seen in a local CI run on 2026-12-03, although the process
group is destroyed at exit by `instructrec.distributed._leave`; not reproduced in isolation).
Such a launch is run once more; any other failure, or the abort twice, fails the test, and the
outputs are compared either way."""


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and GLOO_ABORT in res.stdout + res.stderr:
        print(f"launch aborted in gloo ({GLOO_ABORT!r}); running it once more")
        res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


ACCELERATE_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def data_dir(synthetic_seq, tmp_path_factory):
    return synthetic_seq.save(tmp_path_factory.mktemp("synth-dist") / "data")


def test_two_process_evaluate_equals_one_process(data_dir, tiny_llama_dir, tmp_path):
    args = ["evaluate", "--data", str(data_dir), "--method", "popularity,bm25,llm,llm+popularity",
            "--model", str(tiny_llama_dir), "--users", "40", "--valid-users", "24", "--seed", "1"]
    _run([sys.executable, "-m", "instructrec", *args, "--models", str(tmp_path / "m1"),
          "--out", str(tmp_path / "one")], tmp_path)
    # retrievers not fitted yet: rank 0 fits and saves them, rank 1 loads them
    _run([*ACCELERATE_2, "--main_process_port", str(_free_port()), "-m", "instructrec", *args,
          "--models", str(tmp_path / "m2"), "--out", str(tmp_path / "two")], tmp_path)
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert two["settings"]["processes"] == 2 and one["settings"]["processes"] == 1
    assert [r["method"] for r in two["results"]] == ["popularity", "bm25", "llm", "llm+popularity"]
    assert [r["metrics"] for r in two["results"]] == [r["metrics"] for r in one["results"]]
    assert two["settings"]["fusion_weights"] == one["settings"]["fusion_weights"]
    assert two["settings"]["paired"] == one["settings"]["paired"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "two" / "per_user.parquet"),
                                  pd.read_parquet(tmp_path / "one" / "per_user.parquet"))


def test_two_process_instruction_build_with_llm_teacher_equals_one_process(data_dir, tiny_llama_dir, tmp_path):
    args = ["instructions", "build", "--data", str(data_dir), "--split", "valid", "--teacher", "local",
            "--teacher-model", str(tiny_llama_dir), "--max-examples", "24", "--shard-size", "6"]
    _run([sys.executable, "-m", "instructrec", *args, "--out", str(tmp_path / "one"),
          "--teacher-cache", str(tmp_path / "c1.sqlite")], tmp_path)
    _run([*TORCHRUN_2, "-m", "instructrec", *args, "--out", str(tmp_path / "two"),
          "--teacher-cache", str(tmp_path / "c2.sqlite")], tmp_path)
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    assert sum(f.startswith("shard-") for f in files) == 4
    for name in files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    stats = json.loads((tmp_path / "two" / "stats.json").read_text())
    assert any(k.endswith(":llm") for k in stats["per_teacher_source"])  # the LLM wrote texts
