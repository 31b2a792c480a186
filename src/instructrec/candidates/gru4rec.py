"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): a GRU over the sequence.

Item embedding, dropout, a GRU, and a linear projection back to the embedding space; the next item
is scored against the (shared) item embeddings. Loss: softmax cross-entropy over all items, the
limit of the paper's cross-entropy over sampled negatives (the 2018 paper reports it as the most
accurate choice when scoring all items is affordable, as it is at this catalogue size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from instructrec.candidates.base import register
from instructrec.candidates.sequential import (
    SequentialRetriever,
    SequentialSettings,
    gather_last,
    init_weights,
    pad_right,
    softmax_loss,
)


@dataclass
class GRU4RecSettings(SequentialSettings):
    """GRU4Rec settings."""

    gru_hidden: int = 128
    """Hidden size of the GRU."""
    n_layers: int = 1
    """Stacked GRU layers."""
    dropout: float = 0.3
    """Dropout on the input embeddings."""


class GRU4RecNet(nn.Module):
    def __init__(self, n_items: int, s: GRU4RecSettings) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, s.hidden, padding_idx=0)
        self.drop = nn.Dropout(s.dropout)
        self.gru = nn.GRU(s.hidden, s.gru_hidden, num_layers=s.n_layers, batch_first=True)
        self.proj = nn.Linear(s.gru_hidden, s.hidden)
        init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Right padding: outputs at real positions never depend on the padding that follows.
        out, _ = self.gru(self.drop(self.item_emb(tokens)))
        return self.proj(out)


@register("gru4rec")
class GRU4Rec(SequentialRetriever):
    Settings = GRU4RecSettings

    def _build(self, n_items: int) -> nn.Module:
        return GRU4RecNet(n_items, self.settings)

    def _loss(self, seqs: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        tokens, _ = pad_right(seqs, self.settings.max_len + 1)
        h = self.net(tokens[:, :-1])
        tgt = tokens[:, 1:]
        valid = tgt > 0
        return softmax_loss(h[valid], tgt[valid], self.net.item_emb.weight, self.n_items,
                            self.settings.ce_negatives, rng)

    def _encode(self, seqs: Sequence[np.ndarray]) -> torch.Tensor:
        tokens, lengths = pad_right(seqs, self.settings.max_len)
        return gather_last(self.net(tokens), lengths)
