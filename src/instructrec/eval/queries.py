"""Text queries for the search tasks: a per-user query hook plus the built-in ones.

A query provider maps evaluated users (split rows) and their true items to one query string each:
`QueryProvider = Callable[[np.ndarray rows, np.ndarray targets], list[str]]`.

- `TitleKeywordQueries`: the specific intention (I2) when items carry no categories (Games): up
  to `n_words` content words of the true item's title, chosen with a seeded draw per user and
  kept in title order. With categories present it uses the target's categories instead, as the
  paper does.
- `TeacherQueries`: the texts the instruction teacher writes for training (the default source,
  so evaluation reads what the model was tuned on): I2 and I1 from the true item's own data, P2
  from the history before the stage's target.
- `QueryTable`: queries written elsewhere: a JSONL file with `user_id` and `query` per line, or a
  mapping.

`query_provider(task, ..., source)` is the one place that picks the provider for a task:
`teacher` (default), `title-keywords` (I2 only) or a JSONL file path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit, Split
from instructrec.errors import DataError, InstructRecError

QueryProvider = Callable[[np.ndarray, np.ndarray], list[str]]

_WORD = re.compile(r"[a-z0-9][a-z0-9'+\-]*")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its", "of", "on", "or", "the", "to", "with", "vs", "edition", "version", "new", "game", "games", "video"]
)


def content_words(text: str) -> list[str]:
    """Lower-cased words of a title without stopwords, one-letter words and repeats."""
    seen: list[str] = []
    for w in _WORD.findall(text.lower()):
        if len(w) > 1 and w not in STOPWORDS and w not in seen:
            seen.append(w)
    return seen


class TitleKeywordQueries:
    """Specific-intention queries from the true item's categories, else from its title's words."""

    def __init__(self, dataset: Dataset, n_words: int = 3, seed: int = 0) -> None:
        self.dataset, self.n_words, self.seed = dataset, n_words, seed

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> list[str]:
        out = []
        cats = self.dataset.items["categories"]
        for row, item in zip(rows, targets):
            labels = list(cats.iat[int(item)])
            if labels:
                out.append(", ".join(labels[-self.n_words:]))
                continue
            words = content_words(self.dataset.title(int(item)))
            if len(words) > self.n_words:
                rng = np.random.default_rng([self.seed, int(row)])
                keep = np.sort(rng.choice(len(words), size=self.n_words, replace=False))
                words = [words[i] for i in keep]
            out.append(" ".join(words))
        return out


class QueryTable:
    """Queries given per user id (from a JSONL file or a mapping user_id -> query)."""

    def __init__(self, dataset: Dataset, split: LeaveOneOutSplit, queries: Mapping[str, str]) -> None:
        self.by_row: dict[int, str] = {}
        row_of = {int(u): i for i, u in enumerate(split.users)}
        for user_id, query in queries.items():
            if dataset.has_user(user_id) and dataset.user_index(user_id) in row_of:
                self.by_row[row_of[dataset.user_index(user_id)]] = str(query)

    @classmethod
    def from_jsonl(cls, dataset: Dataset, split: LeaveOneOutSplit, path: str | Path) -> QueryTable:
        path = Path(path)
        if not path.exists():
            raise DataError(f"query file {path} does not exist.")
        table: dict[str, str] = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                table[str(rec["user_id"])] = str(rec["query"])
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{path}:{lineno}: expected a JSON object with `user_id` and `query`.") from None
        return cls(dataset, split, table)

    def rows(self) -> np.ndarray:
        """Split rows that have a query (evaluate only these)."""
        return np.array(sorted(self.by_row), dtype=np.int64)

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> list[str]:
        missing = [int(r) for r in rows if int(r) not in self.by_row]
        if missing:
            raise DataError(f"no query for {len(missing)} evaluated user(s) (first row {missing[0]}); "
                            "give a query for every evaluated user or evaluate only those with one.")
        return [self.by_row[int(r)] for r in rows]


QUERY_KIND = {"I1": "vague_intention", "I2": "specific_intention", "P2": "preference"}
"""Task query aspect -> the teacher request kind that writes it."""


class TeacherQueries:
    """Per-user query texts written by the instruction teacher: I2/I1 from the target item only,
    P2 from the user's history before the `stage` target (as in training data)."""

    def __init__(self, dataset: Dataset, split: LeaveOneOutSplit, query: str, stage: Split = "test",
                 teacher: object | None = None, history_items: int = 20) -> None:
        if query not in QUERY_KIND:
            raise InstructRecError(f"no teacher query for aspect {query!r}; choose one of {sorted(QUERY_KIND)}.")
        self.dataset, self.split, self.kind, self.stage = dataset, split, QUERY_KIND[query], stage
        self.history_items = history_items
        self._teacher = teacher

    @property
    def teacher(self):  # noqa: ANN201 - an ExtractiveTeacher, fitted on first use
        if self._teacher is None:
            from instructrec.instructions.teachers.extractive import ExtractiveTeacher

            self._teacher = ExtractiveTeacher().fit(self.dataset)
        return self._teacher

    def __call__(self, rows: np.ndarray, targets: np.ndarray) -> list[str]:
        from instructrec.instructions.teachers.base import TeacherRequest

        reqs = []
        for row, target in zip(rows, targets, strict=True):
            user = str(self.dataset.user_ids[self.split.users[int(row)]])
            if self.kind == "preference":
                hist = tuple(int(i) for i in self.split.history(int(row), self.stage, self.history_items))
                reqs.append(TeacherRequest("preference", user, history=hist))
            else:
                reqs.append(TeacherRequest(self.kind, user, item=int(target)))
        return [a.text for a in self.teacher.answer(reqs)]


QUERY_SOURCES = ("teacher", "title-keywords")


def query_provider(query: str | None, dataset: Dataset, split: LeaveOneOutSplit, source: str = "teacher",
                   seed: int = 0, stage: Split = "test", teacher: object | None = None) -> QueryProvider | None:
    """The provider of a task's query texts (`query` = the task's I1/I2/P2 aspect, None for none).

    `source`: `teacher` (the instruction teacher's texts, as in training), `title-keywords` (I2
    only: the target's categories, else its title words) or the path of a JSONL file.
    """
    if query is None:
        return None
    if source == "teacher":
        return TeacherQueries(dataset, split, query, stage, teacher)
    if source == "title-keywords":
        if query != "I2":
            raise InstructRecError(f"title-keywords queries are specific intentions (I2), not {query}; "
                                   "use --queries teacher or a JSONL file.")
        return TitleKeywordQueries(dataset, seed=seed)
    if Path(source).suffix in (".jsonl", ".json") or Path(source).exists():
        return QueryTable.from_jsonl(dataset, split, source)
    raise InstructRecError(f"unknown query source {source!r}; use teacher, title-keywords or a JSONL file path.")
