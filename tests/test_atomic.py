"""atomic_write / atomic_file / atomic_folder: the old content or the complete new one, no temp left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instructrec.atomic import atomic_file, atomic_folder, atomic_write


def siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_text_and_bytes(tmp_path):
    path = tmp_path / "sub" / "a.json"
    assert atomic_write(path, json.dumps({"a": 1})) == path  # creates the parent folder
    assert json.loads(path.read_text()) == {"a": 1}
    atomic_write(path, "ünïcode\n")
    assert path.read_text(encoding="utf-8") == "ünïcode\n"
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert siblings(path.parent) == ["a.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic_write(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert siblings(tmp_path) == ["a.txt"]


def test_atomic_file_exception_mid_write_keeps_old_file(tmp_path):
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_file(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".state.bin.tmp-")
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert siblings(tmp_path) == ["state.bin"]


def test_atomic_file_with_handle_writers(tmp_path):
    path = tmp_path / "arrays.npz"
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, x=np.arange(3))
    with np.load(path) as z:
        np.testing.assert_array_equal(z["x"], np.arange(3))
    assert siblings(tmp_path) == ["arrays.npz"]


def test_atomic_file_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_file(tmp_path / "never.txt"):
        pass
    assert siblings(tmp_path) == []


def test_atomic_folder_replaces_or_keeps(tmp_path):
    path = tmp_path / "model"
    with atomic_folder(path) as tmp:
        (tmp / "config.json").write_text("{}")
    assert siblings(path) == ["config.json"]
    with pytest.raises(RuntimeError), atomic_folder(path) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("interrupted")
    assert siblings(path) == ["config.json"] and siblings(tmp_path) == ["model"]
    with pytest.raises(FileExistsError), atomic_folder(path, replaceable=lambda p: False) as tmp:
        (tmp / "other").write_text("x")
    assert siblings(path) == ["config.json"] and siblings(tmp_path) == ["model"]
    with atomic_folder(path) as tmp:
        (tmp / "new").write_text("x")
    assert siblings(path) == ["new"] and siblings(tmp_path) == ["model"]


def test_temporaries_of_dead_processes_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / f".model.tmp-{pid}").mkdir()  # as a SIGKILLed atomic_folder leaves them
    (tmp_path / f".model.old-{pid}").mkdir()
    (tmp_path / f".a.json.tmp-{pid}-0123abcd").write_text("half")
    (tmp_path / ".model.tmp-1").mkdir()  # pid 1 is alive: not ours to remove
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "x").write_text("x")
    atomic_write(tmp_path / "a.json", "{}")
    assert siblings(tmp_path) == [".model.tmp-1", "a.json", "model"]
