"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Architecture as in the paper: item embeddings (scaled by sqrt(d)) plus learned absolute position
embeddings, dropout, `n_layers` pre-LayerNorm transformer blocks with causal attention and a
point-wise feed-forward of width `hidden`, a final LayerNorm; item embeddings are shared between
input and output. Loss: the paper's binary cross-entropy with one uniformly sampled negative per
position (`loss="bce"`), or softmax cross-entropy (`loss="ce"`, RecBole's default; over all items or
`ce_negatives` shared uniform samples), which converges in far fewer epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
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
class SASRecSettings(SequentialSettings):
    """SASRec settings: the paper's architecture (d=64, 2 blocks, 1 head, max length 50, dropout 0.5
    as for its sparse Amazon data sets). The default loss is a sampled softmax (`loss="ce"`), which
    reaches the paper's Games figure within the CPU budget; `loss="bce"` is the paper's own."""

    n_layers: int = 2
    """Self-attention blocks."""
    dropout: float = 0.5
    """Dropout on embeddings, attention and feed-forward (the paper's value for Amazon data)."""
    n_heads: int = 1
    """Attention heads."""
    loss: Literal["bce", "ce"] = "ce"
    """bce: one sampled negative per position (paper); ce: softmax (see ce_negatives)."""


class SASRecNet(nn.Module):
    def __init__(self, n_items: int, s: SASRecSettings) -> None:
        super().__init__()
        self.hidden = s.hidden
        self.item_emb = nn.Embedding(n_items + 1, s.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(s.max_len, s.hidden)
        self.drop = nn.Dropout(s.dropout)
        layer = nn.TransformerEncoderLayer(s.hidden, s.n_heads, dim_feedforward=s.hidden, dropout=s.dropout,
                                           activation="relu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, s.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(s.hidden)
        init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.size(1)
        pos = torch.arange(length, device=tokens.device)
        x = self.item_emb(tokens) * math.sqrt(self.hidden) + self.pos_emb(pos)[None]
        x = self.drop(x) * (tokens > 0).unsqueeze(-1)
        # Right padding + causal mask: real positions never see the padding after them, so no key
        # padding mask is needed (and an empty history cannot produce an all-masked row).
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), 1)
        return self.norm(self.encoder(x, mask=causal))


@register("sasrec")
class SASRec(SequentialRetriever):
    Settings = SASRecSettings

    def _build(self, n_items: int) -> nn.Module:
        return SASRecNet(n_items, self.settings)

    def _loss(self, seqs: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        tokens, _ = pad_right(seqs, self.settings.max_len + 1)
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        h = self.net(inp)
        valid = tgt > 0
        h, tgt = h[valid], tgt[valid]
        emb = self.net.item_emb
        if self.settings.loss == "ce":
            return softmax_loss(h, tgt, emb.weight, self.n_items, self.settings.ce_negatives, rng)
        neg = torch.from_numpy(rng.integers(1, self.n_items + 1, size=tgt.shape[0]))
        neg = torch.where(neg == tgt, neg % self.n_items + 1, neg)
        pos_logit = (h * emb(tgt)).sum(-1)
        neg_logit = (h * emb(neg)).sum(-1)
        return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + \
            F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))

    def _encode(self, seqs: Sequence[np.ndarray]) -> torch.Tensor:
        tokens, lengths = pad_right(seqs, self.settings.max_len)
        return gather_last(self.net(tokens), lengths)
