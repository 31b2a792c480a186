"""Fast start (issue 12): the command line imports torch, transformers and FastAPI only in the
commands that use them, so `--help` and light commands start in about a second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_cli_starts_without_torch_transformers_or_fastapi():
    code = ("import sys; import instructrec.cli.main as m; m.setup_logging(False); "
            "print(sorted(x for x in ('torch', 'transformers', 'fastapi', 'peft', 'instructrec.experiments.runner', "
            "'instructrec.experiments.recipe') if x in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
