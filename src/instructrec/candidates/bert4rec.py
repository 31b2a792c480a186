"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained with the cloze task.

Training masks each position of a training sequence with probability `mask_prob` (at least one
per sequence) and predicts the masked items with softmax cross-entropy over all items. To
recommend, a [mask] token is appended after the history and its output is scored. Architecture as
in the paper: item + learned position embeddings, LayerNorm and dropout, post-LN transformer
blocks with GELU and a 4x feed-forward, an output head (dense + GELU + LayerNorm) and the shared
item embeddings plus a per-item bias.
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
class BERT4RecSettings(SequentialSettings):
    """BERT4Rec settings (paper defaults: 2 layers, 2 heads, hidden 64, mask probability 0.2)."""

    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 2
    """Attention heads."""
    mask_prob: float = 0.2
    """Cloze masking probability per position."""
    dropout: float = 0.2
    """Dropout on embeddings, attention and feed-forward."""


class BERT4RecNet(nn.Module):
    def __init__(self, n_items: int, s: BERT4RecSettings) -> None:
        super().__init__()
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, s.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(s.max_len, s.hidden)
        self.in_norm = nn.LayerNorm(s.hidden)
        self.drop = nn.Dropout(s.dropout)
        layer = nn.TransformerEncoderLayer(s.hidden, s.n_heads, dim_feedforward=4 * s.hidden, dropout=s.dropout,
                                           activation="gelu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, s.n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(s.hidden, s.hidden), nn.GELU(), nn.LayerNorm(s.hidden))
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tokens.size(1), device=tokens.device)
        x = self.drop(self.in_norm(self.item_emb(tokens) + self.pos_emb(pos)[None]))
        return self.head(self.encoder(x, src_key_padding_mask=tokens == 0))


@register("bert4rec")
class BERT4Rec(SequentialRetriever):
    Settings = BERT4RecSettings
    _min_train_len = 1

    def _build(self, n_items: int) -> nn.Module:
        return BERT4RecNet(n_items, self.settings)

    def _item_bias(self) -> torch.Tensor | None:
        return self.net.out_bias

    def _loss(self, seqs: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        tokens, lengths = pad_right(seqs, self.settings.max_len)
        real = tokens > 0
        masked = torch.from_numpy(rng.random(tokens.shape) < self.settings.mask_prob) & real
        # At least one masked position per sequence: the last one when the draw chose none.
        none = ~masked.any(1)
        masked[none, (lengths[none] - 1).clamp(min=0)] = True
        inp = tokens.masked_fill(masked, self.net.mask_token)
        h = self.net(inp)[masked]
        return softmax_loss(h, tokens[masked], self.net.item_emb.weight, self.n_items, self.settings.ce_negatives,
                            rng, bias=self.net.out_bias)

    def _encode(self, seqs: Sequence[np.ndarray]) -> torch.Tensor:
        tokens, lengths = pad_right(seqs, self.settings.max_len - 1)
        tokens = torch.cat([tokens, torch.zeros(len(seqs), 1, dtype=torch.long)], 1)
        tokens[torch.arange(len(seqs)), lengths] = self.net.mask_token
        return gather_last(self.net(tokens), lengths + 1)
