"""Write a file or a folder so that readers see the old one or the complete new one, never half of either.

The new content goes to a hidden temporary sibling (same folder, so the rename stays on one file
system), which then replaces the target with `os.replace`. On any exception the temporary is
removed and the target is left as it was. A process killed outright (SIGKILL, power loss) cannot
clean up: the next write of the same target removes the temporaries that dead processes left
(`remove_stale`), so a crash never leaks a half-written copy for good.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _temp_sibling(path: Path) -> Path:
    """A hidden name next to `path`, unique per process and call (threads may write the same file)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: str | Path) -> list[Path]:
    """Remove the temporaries of `path` (`.NAME.tmp-PID...`, `.NAME.old-PID`) whose process is
    no longer running on this machine; returns what was removed."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)(?:-[0-9a-f]{{8}})?")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        m = pattern.fullmatch(p.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for a writer that wants a file name (`torch.save`, an open handle);
    on success the file is fsynced and renamed onto `path`.

    The temporary name does not end in `path`'s suffix: writers that add a missing suffix
    (`np.savez(name)`) should be given an open handle instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write `data` (text in `encoding`, or bytes) to `path` atomically; returns `path`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


@contextmanager
def atomic_folder(path: str | Path, replaceable: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `path` by renames.

    `replaceable(path)` is asked before an existing `path` is replaced; return False to keep it (the
    caller's check raises its own error). On any exception the temporary folder is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if replaceable is not None and not replaceable(path):
                raise FileExistsError(path)
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

