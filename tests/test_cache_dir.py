"""One cache folder for converted models and the teacher cache, from one environment variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from instructrec.cache_dir import cache_dir
from instructrec.instructions.teachers import default_cache_path
from instructrec.model import defaults as model_defaults


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("INSTRUCTREC_CACHE", "INSTRUCTREC_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_is_under_home_cache(clean_env):
    assert cache_dir() == Path.home() / ".cache" / "instructrec"


def test_xdg_then_override(clean_env, tmp_path):
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "instructrec"
    clean_env.setenv("INSTRUCTREC_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_models_and_teacher_cache_share_it(clean_env, tmp_path):
    clean_env.setenv("INSTRUCTREC_CACHE", str(tmp_path))
    assert model_defaults.converted_dir() == tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert default_cache_path() == tmp_path / "teacher-cache.sqlite"


def test_old_variable_still_works_with_a_warning(clean_env, tmp_path):
    clean_env.setenv("INSTRUCTREC_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(FutureWarning, match="INSTRUCTREC_CACHE_DIR is deprecated"):
        assert default_cache_path() == tmp_path / "old" / "teacher-cache.sqlite"
    clean_env.setenv("INSTRUCTREC_CACHE", str(tmp_path / "new"))
    assert default_cache_path() == tmp_path / "new" / "teacher-cache.sqlite"  # the new one wins, no warning
