"""Crash harness: run a command, SIGKILL it at seeded kill points, resume it, compare with an uninterrupted run.

A kill point is "when a new path matching `after` appears under the watched folder (or at once, for
`after=None`), plus a seeded random delay": the job's risky moments (a temporary folder being
filled, a checkpoint being saved, a report being written) are hit on purpose, and the delay
moves the kill around them. "New" means not there when that attempt started, so after a resume
the point waits for work that is still to be done; a command that finishes first is recorded as
such. After every kill, `check(folder)` asserts that nothing half-written looks complete. Then the
command is run to the end and its outputs are compared with a reference run's by the caller.

    seconds = run_to_end(cmd(ref_dir), env)
    result = kill_and_resume("job", cmd(out_dir), watch=out_dir, env=env, reference_seconds=seconds,
                             points=[KillPoint(None, 0.6), KillPoint("**/.*.tmp-*", 0.05), ...],
                             check=check, seed=0)
    assert result.killed >= 5   # then compare out_dir with ref_dir
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child `python -m instructrec`: this checkout's code, offline, one thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    return env


def instructrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "instructrec", *args]


@dataclass(frozen=True)
class KillPoint:
    """Kill when a path matching `after` (a glob under the watched folder) appears or changes, a
    delay later that the harness draws in [0, jitter] seconds; `after=None`: at a moment drawn in
    [0, jitter x the reference run's time] after the start."""

    after: str | None = None
    jitter: float = 0.3


@dataclass
class Kill:
    point: str
    delay: float
    killed: bool
    """False when the command finished before the kill point was reached."""
    at: float
    """Seconds after the attempt started."""
    seen: list[str] = field(default_factory=list)
    """The newest paths of the watched folder at the kill: evidence of the phase that was hit."""


@dataclass
class CrashResult:
    job: str
    reference_seconds: float
    kills: list[Kill]
    resume_seconds: float

    @property
    def killed(self) -> int:
        return sum(k.killed for k in self.kills)

    def record(self) -> dict:
        return {"job": self.job, "reference_s": round(self.reference_seconds, 1),
                "resume_s": round(self.resume_seconds, 1), "killed": self.killed,
                "kills": [{**asdict(k), "delay": round(k.delay, 2), "at": round(k.at, 2)} for k in self.kills]}


def run_to_end(cmd: Sequence[str], env: dict[str, str], cwd: str | Path | None = None, timeout: float = 600) -> float:
    """Run `cmd` to completion (it must succeed); its wall time in seconds."""
    started = time.monotonic()
    res = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return time.monotonic() - started


def _matches(root: Path, pattern: str) -> set[tuple[str, int]]:
    """Paths matching `pattern` with their modification times (a rewritten file counts as new)."""
    out = set()
    try:
        for p in root.glob(pattern):
            try:
                out.add((str(p.relative_to(root)), p.stat().st_mtime_ns))
            except OSError:
                continue
    except (OSError, ValueError):  # a folder renamed or removed while globbing
        pass
    return out


def _listing(root: Path, limit: int = 8) -> list[str]:
    """The `limit` most recently changed paths under `root`, newest last, and how many others."""
    if not root.exists():
        return []
    stamped = []
    # os.walk, not rglob: the watched process renames temporary folders while this lists them,
    # and os.walk skips a folder that vanished instead of raising (rglob's scandir raises)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            try:
                stamped.append((p.stat().st_mtime_ns, str(p.relative_to(root))))
            except OSError:  # removed or renamed meanwhile
                continue
    stamped.sort()
    more = len(stamped) - limit
    return ([f"({more} older)"] if more > 0 else []) + [rel for _, rel in stamped[-limit:]]


def kill_once(cmd: Sequence[str], env: dict[str, str], watch: Path, point: KillPoint, delay: float,
              cwd: str | Path | None = None, timeout: float = 600, poll: float = 0.005) -> Kill:
    """Start `cmd`, SIGKILL its process group at `point` + `delay` (or let it finish)."""
    before = _matches(watch, point.after) if point.after else set()
    started = time.monotonic()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    fired = started if point.after is None else None
    label = point.after or "start"
    try:
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                assert proc.returncode == 0, f"{' '.join(cmd)} failed before the kill point:\n{err[-3000:]}"
                return Kill(label, delay, False, now - started)
            if now - started > timeout:
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout} s")
            if fired is None and _matches(watch, point.after) - before:  # type: ignore[arg-type]
                fired = now
            if fired is not None and now - fired >= delay:
                seen = _listing(watch)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return Kill(label, delay, True, now - started, seen)
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def kill_and_resume(job: str, cmd: Sequence[str], *, watch: Path, points: Sequence[KillPoint], env: dict[str, str],
                    reference_seconds: float, check: Callable[[Path], None] | None = None, seed: int = 0,
                    cwd: str | Path | None = None, timeout: float = 600) -> CrashResult:
    """Kill `cmd` once per kill point (delays drawn from `seed`), `check` after each kill, then run it to the end."""
    rng = random.Random(seed)
    kills = []
    for point in points:
        upper = point.jitter * reference_seconds if point.after is None else point.jitter
        kill = kill_once(cmd, env, watch, point, rng.uniform(0, upper), cwd, timeout)
        kills.append(kill)
        if check is not None:
            try:
                check(watch)
            except AssertionError as exc:
                raise AssertionError(f"after a kill at {kill}: {exc}") from exc
    resume = run_to_end(cmd, env, cwd, timeout)
    result = CrashResult(job, reference_seconds, kills, resume)
    log = os.environ.get("INSTRUCTREC_CRASH_LOG")
    if log:  # the record of kill points behind benchmarks/RESULTS.md ("Crash resume")
        with open(log, "a") as fh:
            fh.write(json.dumps(result.record()) + "\n")
    return result


def tree_bytes(root: Path, ignore: Callable[[str, bytes], bytes] | None = None) -> dict[str, bytes]:
    """Every file under `root` (hidden ones too) -> its bytes (passed through `ignore(relpath, data)`)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(root))
            data = p.read_bytes()
            out[rel] = ignore(rel, data) if ignore else data
    return out
