"""Stage folders keyed by the hash of their resolved settings.

Each stage of a recipe run (data, an instruction build, a retriever, a tuned model, a candidate
set, a fusion weight, a method's per-user results) lives at `<out>/<kind>/<name>-<hash>` where the
hash covers its resolved settings and the hashes of the stages it reads. Its `stage.json` (or
`<file>.stage.json` beside a one-file stage) is written last, after the output is complete, and
holds the settings, their hash and the time it took. A stage is reused only when that record
exists and its hash matches; anything else (a killed run, changed settings) computes it again, so
a run can be killed at any point and resumed by running it again, and changing one setting
re-runs exactly the stages whose settings or inputs it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from instructrec.atomic import atomic_folder

T = TypeVar("T")
RECORD = "stage.json"
FILE_RECORD_SUFFIX = ".stage.json"
"""A file stage's record sits beside it: `<file>.stage.json`, written last (the file is complete)."""


def settings_hash(settings: Any) -> str:
    """A short stable hash of JSON-able settings."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


_PAGE_MB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) / 2**20


def _rss_mb() -> float:
    """This process's resident memory now (Linux /proc/self/statm; 0 where there is none)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return 0.0


def release_freed_memory() -> None:
    """Collect garbage and hand the heap memory it and the stage freed back to the OS: glibc keeps
    freed pages resident (after the quickstart's training, about 1 GB of activations stayed in the
    process through evaluation). A no-op without glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """The highest resident memory while each open stage computes, sampled every `interval` s by a
    daemon thread (stages nest: a result stage may fit the retriever it reads, and every open stage
    sees each sample). Sampling instead of the kernel's high-water mark, because resetting that
    (`/proc/self/clear_refs`) would also reset what `/usr/bin/time` and `ru_maxrss` report."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._open: list[float] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        with self._lock:
            self._open.append(_rss_mb())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._sample, name="stage-memory", daemon=True)
                self._thread.start()

    def close(self) -> float:
        """The peak (MB) of the innermost open stage, which is closed."""
        now = _rss_mb()
        with self._lock:
            return max(self._open.pop(), now)

    def _sample(self) -> None:
        while True:
            now = _rss_mb()
            with self._lock:
                if not self._open:
                    self._thread = None
                    return
                self._open = [max(p, now) for p in self._open]
            time.sleep(self.interval)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "stage"


@dataclass(frozen=True)
class Stage:
    """One stage: where it lives and what it was computed from."""

    kind: str
    name: str
    settings: dict[str, Any]
    hash: str
    path: Path
    """Folder (or file, for one-file stages) holding the output."""
    file: bool = False

    @property
    def record(self) -> Path:
        return self.path / RECORD if not self.file else self.path.with_name(self.path.name + FILE_RECORD_SUFFIX)

    def done(self) -> bool:
        try:
            rec = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        return rec.get("hash") == self.hash and rec.get("complete") is True and self.path.exists()


class StageLog:
    """Creates stages under a run folder and records which were computed or reused, with timings."""

    def __init__(self, root: str | Path, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.say = say or (lambda _msg: None)
        self.entries: list[dict[str, Any]] = []
        self.memory = PeakMemory()

    def stage(self, kind: str, name: str, settings: dict[str, Any], deps: list[Stage | str] = (),
              suffix: str = "") -> Stage:
        """The stage for `settings` read from `deps` (stages, or strings such as a model spec)."""
        full = {"settings": settings, "deps": [d.hash if isinstance(d, Stage) else str(d) for d in deps]}
        h = settings_hash(full)
        *folders, leaf = [slug(part) for part in name.split("/")]  # "exp/method" -> exp/method-<hash>
        path = self.root.joinpath(kind, *folders, f"{leaf}-{h}{suffix}")
        return Stage(kind, name, full, h, path, file=bool(suffix))

    def run(self, stage: Stage, compute: Callable[[Path], T], load: Callable[[Path], T]) -> T:
        """Reuse a finished stage (`load(path)`) or compute it (`compute(path)` writes `path`)."""
        if stage.done():
            self.entries.append({"kind": stage.kind, "name": stage.name, "hash": stage.hash,
                                 "status": "reused", "seconds": 0.0})
            return load(stage.path)
        self.say(f"{stage.kind}: {stage.name} ({stage.hash})")
        started = time.monotonic()
        stage.path.parent.mkdir(parents=True, exist_ok=True)
        self.memory.open()
        try:
            value = compute(stage.path)
        finally:
            release_freed_memory()
            peak = self.memory.close()
        seconds = round(time.monotonic() - started, 2)
        write_record(stage, seconds)
        self.entries.append({"kind": stage.kind, "name": stage.name, "hash": stage.hash,
                             "status": "computed", "seconds": seconds, "peak_rss_mb": round(peak)})
        return value

    def folder(self, stage: Stage, fill: Callable[[Path], None], load: Callable[[Path], T]) -> T:
        """A folder stage written atomically: `fill(tmp)` fills a temporary folder renamed into place."""

        def compute(path: Path) -> T:
            with atomic_folder(path) as tmp:
                fill(tmp)
            return load(path)

        return self.run(stage, compute, load)

    def timings(self) -> dict[str, float]:
        """Seconds computed per stage kind in this run."""
        out: dict[str, float] = {}
        for e in self.entries:
            out[e["kind"]] = round(out.get(e["kind"], 0.0) + e["seconds"], 2)
        return out

    def peak_memory(self) -> dict[str, int]:
        """The highest resident memory (MB, sampled) of this process while a stage of each kind was
        computed (a stage's figure includes the stages nested in it)."""
        out: dict[str, int] = {}
        for e in self.entries:
            if "peak_rss_mb" in e:
                out[e["kind"]] = max(out.get(e["kind"], 0), e["peak_rss_mb"])
        return out


def write_record(stage: Stage, seconds: float) -> None:
    from instructrec.atomic import atomic_write

    doc = {"kind": stage.kind, "name": stage.name, "hash": stage.hash, "complete": True,
           "seconds": seconds, **stage.settings}
    atomic_write(stage.record, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
