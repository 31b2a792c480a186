"""Text queries for the search tasks: a per-user query hook plus the built-in ones.

A query provider maps evaluated users (split rows) and their true items to one query string each:
`QueryProvider = Callable[[np.ndarray rows, np.ndarray targets], list[str]]`.

- `TitleKeywordQueries`: the specific intention (I2) when items carry no categories (Games): up
  to `n_words` content words of the true item's title, chosen with a seeded draw per user and
  kept in title order. With categories present it uses the target's categories instead, as the
  paper does.
- `QueryTable`: queries written elsewhere (vague intentions I1 and explicit preferences P2 come from
  the instruction generator): a JSONL file with `user_id` and `query` per line, or a mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import DataError

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
