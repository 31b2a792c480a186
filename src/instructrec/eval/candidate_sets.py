"""Materialised candidate sets: the same candidates for every method, saved and reloadable.

A `CandidateSet` holds, per evaluated user, C candidate item indices of which exactly one
(`target_pos`) is the true next item. Specs (CLI `--candidates`):

- `random:N` - the true item + N negatives drawn uniformly (seeded) from items the user never
  interacted with (neither history nor target). The true item goes to a seeded random position.
- `hard:RETRIEVER:N` - the true item + the N items a fitted retriever ranks highest among items the
  user never interacted with; true item at a seeded random position.
- `groups:C` / `groups:C:RETRIEVER` - C candidates (true + C-1 random or retriever negatives) to be
  judged in groups of 10, as in the paper (see `protocol.evaluate(groups=...)`).
- `rerank:RETRIEVER:N` - two-stage, how the system is used (LlamaRec's protocol): the N items a
  fitted retriever ranks highest over the whole catalogue, the user's history excluded; the true
  item is NOT added, so it may be missing (`target_pos` -1; `truth` holds the true items) and a
  reranker is judged on full-catalogue HR@k / NDCG@k for k <= N (a missing target is a miss).
- `file:PATH` - a saved set (`.npz` written by `CandidateSet.save`) or a file in the
  `Games-6k.<retriever>` format: `user_id TAB space-separated item ids` per line. Users of the file
  that are not evaluated users of the dataset are skipped (with a warning). Where the true item is
  absent, it replaces the candidate at a seeded random position (so the size stays C); where
  present, the line is kept as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instructrec.atomic import atomic_file
from instructrec.candidates.base import catalogue_top
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit, Split
from instructrec.errors import DataError, InstructRecError

logger = logging.getLogger(__name__)

FORMAT = "instructrec-candidates/1"


@dataclass
class CandidateSet:
    """Candidates per evaluated user.

    Attributes:
        rows: rows of the leave-one-out split (index into `split.users`), shape (n,).
        items: candidate item indices, shape (n, C).
        target_pos: column of the true item in each row of `items`, shape (n,).
        spec: how the set was built, e.g. "random:9".
        seed: the seed used to draw negatives and positions.
        stage: "test" (target = last item) or "valid" (second-to-last).
        info: anything else needed to reproduce it (retriever path, source file, dataset counts).
        truth: the true item per row where it may be missing from `items` (`rerank:` sets, whose
            `target_pos` is -1 there); None when every row holds its target.
    """

    rows: np.ndarray
    items: np.ndarray
    target_pos: np.ndarray
    spec: str
    seed: int
    stage: Split = "test"
    info: dict[str, Any] = field(default_factory=dict)
    truth: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def size(self) -> int:
        return int(self.items.shape[1])

    def targets(self) -> np.ndarray:
        """The true item of each row (also where it is not among the candidates)."""
        if self.truth is not None:
            return self.truth
        return self.items[np.arange(len(self)), self.target_pos]

    def subset(self, mask_or_idx: np.ndarray) -> CandidateSet:
        return CandidateSet(self.rows[mask_or_idx], self.items[mask_or_idx], self.target_pos[mask_or_idx],
                            self.spec, self.seed, self.stage, dict(self.info),
                            self.truth[mask_or_idx] if self.truth is not None else None)

    def save(self, path: str | Path) -> Path:
        """One `.npz` file (arrays + JSON metadata), written to a temporary name then renamed."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {"format": FORMAT, "spec": self.spec, "seed": self.seed, "stage": self.stage, "info": self.info}
        with atomic_file(path) as tmp, open(tmp, "wb") as fh:
            extra = {"truth": self.truth} if self.truth is not None else {}
            np.savez_compressed(fh, rows=self.rows, items=self.items, target_pos=self.target_pos,
                                meta=np.array(json.dumps(meta)), **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CandidateSet:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != FORMAT:
                    raise ValueError(f"format {meta.get('format')!r}")
                return cls(z["rows"], z["items"], z["target_pos"], meta["spec"], int(meta["seed"]),
                           meta["stage"], meta.get("info", {}), z["truth"] if "truth" in z.files else None)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path} is not a saved candidate set ({exc}); build one with "
                            "`instructrec evaluate --save-candidates`.") from None

    def check(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        """Fail clearly if this set does not belong to `dataset` (wrong users/items/targets)."""
        if len(self) and (self.rows.max() >= len(split) or self.items.max() >= dataset.n_items):
            raise DataError("this candidate set refers to users or items the dataset does not have; "
                            "it was built for another dataset.")
        truth = split.test_target if self.stage == "test" else split.valid_target
        if not np.array_equal(self.targets(), truth[self.rows]):
            raise DataError("this candidate set's true items differ from the dataset's targets; "
                            "it was built for another dataset or split.")


@dataclass(frozen=True)
class CandidateSpec:
    """A parsed `--candidates` value."""

    mode: str
    """random | hard | groups | rerank | file."""
    n: int = 9
    """Negatives (random/hard) or total candidates (groups)."""
    retriever: str | None = None
    """Retriever name for hard negatives (hard, groups:C:NAME)."""
    path: str | None = None
    """File for mode file."""

    @property
    def group_size(self) -> int | None:
        return 10 if self.mode == "groups" else None


def parse_spec(spec: str) -> CandidateSpec:
    """Parse `random:9`, `hard:sasrec:9`, `groups:100`, `groups:100:bpr`, `rerank:sasrec:20`, `file:PATH`."""
    parts = spec.split(":")
    usage = "use random:N, hard:RETRIEVER:N, groups:C[:RETRIEVER], rerank:RETRIEVER:N or file:PATH"
    try:
        if parts[0] == "file" and len(parts) >= 2:
            return CandidateSpec("file", 0, path=spec[len("file:"):])
        if parts[0] == "random" and len(parts) <= 2:
            return CandidateSpec("random", int(parts[1]) if len(parts) == 2 else 9)
        if parts[0] == "hard" and len(parts) in (2, 3):
            return CandidateSpec("hard", int(parts[2]) if len(parts) == 3 else 9, retriever=parts[1])
        if parts[0] == "rerank" and len(parts) == 3 and parts[1]:
            if int(parts[2]) < 2:
                raise InstructRecError(f"{spec}: rerank at least 2 retrieved items.")
            return CandidateSpec("rerank", int(parts[2]), retriever=parts[1])
        if parts[0] == "groups" and len(parts) in (2, 3):
            total = int(parts[1])
            if total % 10 or total < 20:
                raise InstructRecError(f"groups:{total}: the total must be a multiple of 10 (>= 20).")
            return CandidateSpec("groups", total, retriever=parts[2] if len(parts) == 3 else None)
    except ValueError:
        pass
    raise InstructRecError(f"cannot read candidates spec {spec!r}; {usage}.")


def _targets(split: LeaveOneOutSplit, rows: np.ndarray, stage: Split) -> np.ndarray:
    return (split.test_target if stage == "test" else split.valid_target)[rows]


def _seen(dataset: Dataset, split: LeaveOneOutSplit, row: int, stage: Split) -> np.ndarray:
    """Items the user interacted with up to and including the stage's target."""
    seq = dataset.sequences[int(split.users[row])]
    return seq if stage == "test" else seq[:-1]


def _with_target(negatives: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Insert each target at a seeded random position; negatives keep their order around it."""
    n, k = negatives.shape
    pos = rng.integers(0, k + 1, size=n)
    items = np.empty((n, k + 1), dtype=np.int64)
    for j in range(k + 1):
        left = negatives[:, min(j, k - 1)] if k else targets
        right = negatives[:, j - 1] if j else targets
        items[:, j] = np.where(j < pos, left, np.where(j == pos, targets, right))
    return items, pos


def random_candidates(dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray, n_neg: int = 9,
                      seed: int = 0, stage: Split = "test") -> CandidateSet:
    """The true item + `n_neg` uniform negatives the user never interacted with (seeded)."""
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    negatives = np.empty((len(rows), n_neg), dtype=np.int64)
    for i, row in enumerate(rows):
        seen = _seen(dataset, split, row, stage)
        if dataset.n_items - len(np.unique(seen)) < n_neg:
            raise InstructRecError(f"cannot draw {n_neg} negatives: the catalogue has too few unseen items.")
        picked: list[int] = []
        while len(picked) < n_neg:
            draw = rng.integers(0, dataset.n_items, size=2 * n_neg + 4)
            draw = draw[~np.isin(draw, seen)]
            for item in draw:  # keep draw order; drop repeats
                if item not in picked:
                    picked.append(int(item))
                    if len(picked) == n_neg:
                        break
        negatives[i] = picked
    items, pos = _with_target(negatives, _targets(split, rows, stage), rng)
    return CandidateSet(rows, items, pos, f"random:{n_neg}", seed, stage)


def _retrieved(dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray, n: int, retriever: Any,
               stage: Split, exclude_target: bool, batch_size: int = 1024) -> np.ndarray:
    """Per row, the retriever's `n` best items over the catalogue, best first, without the user's
    history (and without the stage's target when `exclude_target`)."""
    hists = [split.history(r, stage) for r in rows]
    excludes = [_seen(dataset, split, r, stage) if exclude_target else h for r, h in zip(rows, hists, strict=True)]
    return catalogue_top(retriever, hists, split.users[rows], n, excludes, batch_size)[0]


def rerank_candidates(dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray, n: int, retriever: Any,
                      seed: int = 0, stage: Split = "test", name: str = "retriever") -> CandidateSet:
    """The retriever's top `n` of the catalogue (history excluded), in its order; the true item
    only where the retriever found it (`target_pos` -1 elsewhere)."""
    rows = np.asarray(rows, dtype=np.int64)
    items = _retrieved(dataset, split, rows, n, retriever, stage, exclude_target=False)
    truth = _targets(split, rows, stage)
    hit = items == truth[:, None]
    pos = np.where(hit.any(1), hit.argmax(1), -1)
    info = {"retriever": name, "target_found": int((pos >= 0).sum())}
    return CandidateSet(rows, items, pos, f"rerank:{name}:{n}", seed, stage, info, truth)


def retriever_candidates(dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray, n_neg: int,
                         retriever: Any, seed: int = 0, stage: Split = "test",
                         name: str = "retriever", batch_size: int = 1024) -> CandidateSet:
    """The true item + the `n_neg` best-scored items the user never interacted with."""
    rows = np.asarray(rows, dtype=np.int64)
    negatives = _retrieved(dataset, split, rows, n_neg, retriever, stage, exclude_target=True, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    items, pos = _with_target(negatives, _targets(split, rows, stage), rng)
    return CandidateSet(rows, items, pos, f"hard:{name}:{n_neg}", seed, stage)


def read_candidate_file(dataset: Dataset, split: LeaveOneOutSplit, path: str | Path, seed: int = 0,
                        stage: Split = "test") -> CandidateSet:
    """Parse a `user_id TAB item ids` file (e.g. Games-6k.bpr); insert missing true items."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"candidate file {path} does not exist.")
    if path.suffix == ".npz":
        return CandidateSet.load(path)
    row_of = {int(u): i for i, u in enumerate(split.users)}
    rows, lists, skipped = [], [], 0
    width = None
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        user_id, sep, rest = line.partition("\t")
        ids = rest.split()
        if not sep or not ids:
            raise DataError(f"{path}:{lineno}: expected `user_id<TAB>item ids separated by spaces`.")
        if width is None:
            width = len(ids)
        elif len(ids) != width:
            raise DataError(f"{path}:{lineno}: {len(ids)} candidates where earlier lines have {width}; "
                            "every line needs the same number.")
        if not dataset.has_user(user_id) or dataset.user_index(user_id) not in row_of:
            skipped += 1
            continue
        rows.append(row_of[dataset.user_index(user_id)])
        lists.append([dataset.item_index(i) for i in ids])
    if not rows:
        raise DataError(f"{path}: none of its users are evaluated users of this dataset "
                        "(is it the candidate file of another dataset?).")
    if skipped:
        logger.warning("%s: skipped %d user(s) that are not evaluated users of the dataset", path, skipped)
    rows_arr = np.asarray(rows, dtype=np.int64)
    items = np.asarray(lists, dtype=np.int64)
    targets = _targets(split, rows_arr, stage)
    rng = np.random.default_rng(seed)
    replace_at = rng.integers(0, items.shape[1], size=len(rows_arr))
    present = items == targets[:, None]
    has = present.any(1)
    pos = np.where(has, present.argmax(1), replace_at)
    items[~has, pos[~has]] = targets[~has]
    info = {"source": str(path), "target_inserted": int((~has).sum()), "skipped_users": skipped}
    return CandidateSet(rows_arr, items, pos, f"file:{path}", seed, stage, info)


RetrieverFactory = Callable[[str], Any]
"""Returns a fitted retriever by name (the CLI loads it from disk or fits it)."""


def build_candidates(spec: str | CandidateSpec, dataset: Dataset, split: LeaveOneOutSplit, rows: np.ndarray,
                     seed: int = 0, retrievers: RetrieverFactory | None = None,
                     stage: Split = "test") -> CandidateSet:
    """Materialise a candidate set from a spec for the given split rows."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.mode == "file":
        cands = read_candidate_file(dataset, split, spec.path, seed, stage)
        cands.check(dataset, split)
        keep = np.isin(cands.rows, rows)
        return cands.subset(keep) if not keep.all() else cands
    if spec.mode == "rerank":
        if retrievers is None:
            raise InstructRecError(f"candidates rerank:{spec.retriever} need a fitted retriever.")
        return rerank_candidates(dataset, split, rows, spec.n, retrievers(str(spec.retriever)), seed, stage,
                                 name=str(spec.retriever))
    n_neg = spec.n - 1 if spec.mode == "groups" else spec.n
    if spec.retriever is None:
        cands = random_candidates(dataset, split, rows, n_neg, seed, stage)
    else:
        if retrievers is None:
            raise InstructRecError(f"candidates {spec.mode}:{spec.retriever} need a fitted retriever.")
        cands = retriever_candidates(dataset, split, rows, n_neg, retrievers(spec.retriever), seed, stage,
                                     name=spec.retriever)
    if spec.mode == "groups":
        cands.spec = f"groups:{spec.n}" + (f":{spec.retriever}" if spec.retriever else "")
    return cands
