"""The API against its own OpenAPI description, as a user would check it: `schemathesis run
URL/openapi.json --checks all` on the real server (uvicorn on a free 127.0.0.1 port, the stub
recommender over MovieLens-100K).

Bounded for CI: a fixed seed, at most 100 generated cases per operation and phase (about 1,100
requests, about 10 s on an idle 2-core box), no example database, so every run sends the same requests.
It covers the documented examples (they must be answered with 200), schema-valid bodies (must
not be refused with 422), schema-violating ones (must be refused), undocumented status codes,
response schemas and headers, and the stateful links between operations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

pytestmark = pytest.mark.skipif(not SCHEMATHESIS.exists(),
                                reason="schemathesis is not installed (pip install -e '.[dev]')")


def test_api_conforms_to_its_openapi_description(server_url, tmp_path):
    command = [str(SCHEMATHESIS), "run", f"{server_url}/openapi.json", "--checks", "all", "--seed", "0",
               "--max-examples", "100", "--workers", "1", "--generation-database", "none", "--no-color",
               "--report", "junit", "--report-dir", str(tmp_path)]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "No issues found" in out, out[-3000:]
    assert "Tested: 4" in out  # all four operations: /healthz, /v1/items, /v1/users/{id}, /v1/recommend
    junit = next(tmp_path.glob("*.xml")).read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit
