"""A first stage that understands requests: lexical (BM25) + dense (MiniLM) retrieval over each
item's whole text (title, year, genres/categories, brand, description).

* `dense`: the bundled MiniLM sentence encoder (`embedding.TextEmbedding`) over the whole text;
  it matches meanings ("a scary film" -> items whose text says Horror), which BM25 cannot.
* `hybrid`: per query, `lexical_weight * clip(z(bm25)) + (1 - lexical_weight) * z(dense)`, both
  standardised over the whole catalogue (BM25's cut to +-`lexical_clip`) so that neither scale
  dominates; BM25 keeps exact words (a title, a brand) in play, the dense side supplies the meaning.

Item vectors are computed once in `fit` and saved with the retriever (`dense/state.safetensors`),
so a saved recommender answers without re-encoding the catalogue; only the request is encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instructrec.candidates.base import Retriever, load_retriever, register
from instructrec.candidates.bm25 import BM25, BM25Settings
from instructrec.candidates.embedding import EmbeddingSettings, TextEmbedding
from instructrec.candidates.text_fields import WHOLE_TEXT_FIELDS
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import InstructRecError


def _whole_text() -> list[str]:
    return list(WHOLE_TEXT_FIELDS)


@dataclass
class DenseSettings(EmbeddingSettings):
    """Dense retriever settings: the embedding retriever's, over the whole item text."""

    fields: list[str] = field(default_factory=_whole_text)
    max_length: int = 128
    """Token limit per item text (title + genres + year fit well inside; descriptions are cut)."""
    progress: bool = False


@register("dense")
class DenseText(TextEmbedding):
    Settings = DenseSettings


@dataclass
class HybridSettings:
    """Hybrid (BM25 + MiniLM) retriever settings."""

    lexical_weight: float = 0.2
    """Weight of BM25's z-score; the dense side gets the rest. On the request-following benchmark's
    MovieLens requests (no user): precision@10 0.73 at 0.1, 0.72 at 0.2, 0.69 at 0.3, 0.64 at 0.4
    (dense alone 0.73, BM25 alone 0.33); 0.2 keeps exact title/brand words in play."""
    lexical_clip: float = 3.0
    """BM25's z-scores are cut to +-this: over a catalogue where most items share no query word, a
    title word match ("night") reaches z of 10-30 and would drown the dense side's meaning."""
    fields: list[str] = field(default_factory=_whole_text)
    """Item fields both sides index."""
    max_length: int = 128
    """Dense side: token limit per item text."""
    history_items: int = 5
    """Recent history items that form the query when none is given (both sides)."""
    threads: int | None = 2
    """torch CPU threads of the dense side."""
    model_dir: str | None = None
    """Dense side: a sentence-encoder folder; None: the bundled MiniLM."""


def _zscore(scores: np.ndarray) -> np.ndarray:
    std = scores.std(axis=-1, keepdims=True)
    return (scores - scores.mean(axis=-1, keepdims=True)) / np.where(std > 0, std, 1.0)


@register("hybrid")
class Hybrid(Retriever):
    Settings = HybridSettings
    uses_query = True

    def _parts(self) -> tuple[BM25, DenseText]:
        s = self.settings
        if not 0.0 <= s.lexical_weight <= 1.0:
            raise InstructRecError(f"hybrid: lexical_weight must be in [0, 1], not {s.lexical_weight}.")
        lexical = BM25(BM25Settings(fields=list(s.fields), history_items=min(s.history_items, 3)))
        dense = DenseText(DenseSettings(model_dir=s.model_dir, fields=list(s.fields), max_length=s.max_length,
                                        history_items=s.history_items, threads=s.threads))
        return lexical, dense

    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        self.lexical, self.dense = self._parts()
        self.lexical.fit(dataset, split)
        self.dense.fit(dataset, split)

    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        w = self.settings.lexical_weight
        # Standardise over the whole catalogue, then pick the candidates: a candidate's score must
        # not depend on which other candidates it was drawn with.
        lex = np.asarray(self.lexical.score(histories, None, queries), dtype=np.float64)
        dense = np.asarray(self.dense.score(histories, None, queries), dtype=np.float64)
        clip = self.settings.lexical_clip
        full = (w * np.clip(_zscore(lex), -clip, clip) + (1.0 - w) * _zscore(dense)).astype(np.float32)
        if candidates is None:
            return full
        return np.take_along_axis(full, np.asarray(candidates, dtype=np.int64), axis=1)

    def _save_state(self, path: Path) -> None:
        self.lexical.save(path / "lexical")
        self.dense.save(path / "dense")

    def _load_state(self, path: Path) -> None:
        lexical, dense = load_retriever(path / "lexical"), load_retriever(path / "dense")
        assert isinstance(lexical, BM25) and isinstance(dense, DenseText)
        self.lexical, self.dense = lexical, dense

