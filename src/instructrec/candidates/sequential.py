"""Shared training and scoring for the torch sequence recommenders (SASRec, GRU4Rec, BERT4Rec).

Item index `i` is token `i + 1`; token 0 is padding. Sequences are right-padded (as in RecBole), so
the representation of a history is the network output at its last real position. Training uses
each user's training sequence (items before the validation target), cut to the most recent items;
after every epoch the model ranks all items for a seeded sample of users' validation targets
(seen items excluded; or against 9 random items with `valid_protocol="sampled"`) and the best
epoch is kept (early stopping with `patience`).

Batches are length-bucketed (sort by length with a seeded shuffle, then shuffle the batches) so
that a batch is padded to its own longest sequence, not to `max_len`: Games histories average 8.7
items, so this is most of the speed on a CPU.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from instructrec.atomic import atomic_file
from instructrec.candidates.base import STATE_FILE, Retriever
from instructrec.candidates.training_data import Validator, training_sequences
from instructrec.data.dataset import Dataset
from instructrec.data.split import LeaveOneOutSplit
from instructrec.errors import ModelError
from instructrec.threads import torch_threads

logger = logging.getLogger(__name__)


def pad_right(seqs: Sequence[np.ndarray], max_len: int, offset: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Token matrix (B, L) of the `max_len` most recent items (+offset), right-padded, and lengths."""
    cut = [np.asarray(s[-max_len:] if max_len > 0 else s[:0], dtype=np.int64) for s in seqs]
    lengths = np.array([len(s) for s in cut], dtype=np.int64)
    width = max(int(lengths.max()) if len(lengths) else 1, 1)
    out = np.zeros((len(cut), width), dtype=np.int64)
    for i, s in enumerate(cut):
        out[i, : len(s)] = s + offset
    return torch.from_numpy(out), torch.from_numpy(lengths)


@dataclass
class SequentialSettings:
    """Training settings shared by the torch sequence models."""

    hidden: int = 64
    """Embedding / hidden size."""
    max_len: int = 50
    """Most recent items of a history the model reads."""
    dropout: float = 0.2
    """Dropout on embeddings and inside the layers."""
    epochs: int = 200
    """Upper bound on epochs; early stopping usually ends training sooner."""
    batch_size: int = 128
    """Sequences per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    patience: int = 5
    """Stop after this many epochs without a better validation score."""
    min_delta: float = 1e-4
    """Smallest validation gain that counts as better."""
    valid_protocol: Literal["full", "sampled"] = "sampled"
    """Early-stopping score: full = NDCG@10 over all items; sampled = NDCG@5 against 9 random items."""
    valid_users: int = 5000
    """Users sampled (seeded) for validation after each epoch; 0 turns early stopping off."""
    max_minutes: float | None = None
    """Stop after the epoch that crosses this wall-clock budget (best epoch still restored)."""
    seed: int = 0
    """Seeds initialisation, batching, negatives, masking and the validation sample."""
    threads: int | None = 1
    """torch CPU threads (None: leave torch's setting alone); 1 is fastest on a shared CPU."""
    ce_negatives: int = 512
    """Softmax losses: 0 = over all items; N = sampled softmax against N shared uniform negatives
    (512 trains about 3x faster than the full softmax on Games with the same validation score)."""
    progress: bool = True
    """Show a progress bar per epoch."""
    checkpoint: str | None = None
    """File for the training state after every epoch; if it exists, `fit` resumes from it."""


class SequentialRetriever(Retriever):
    """Base for torch sequence models; subclasses build the network and define the loss."""

    net: nn.Module

    @abstractmethod
    def _build(self, n_items: int) -> nn.Module: ...

    @abstractmethod
    def _loss(self, seqs: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        """Training loss of one batch of raw training sequences (item indices)."""

    @abstractmethod
    def _encode(self, seqs: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, H) representation of each history, for scoring the next item."""

    def _item_matrix(self) -> torch.Tensor:
        """(n_items, H) output embeddings, item index order."""
        return self.net.item_emb.weight[1 : self.n_items + 1]

    def _item_bias(self) -> torch.Tensor | None:
        return None

    def item_vectors(self) -> np.ndarray:
        """(n_items, H) float32 item embeddings in item index order: the collaborative soft tokens'
        table (`model.item_tokens`)."""
        self._check_fitted()
        with torch.no_grad():
            return self._item_matrix().detach().float().cpu().numpy().copy()

    # -- training ----------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        with torch_threads(self.settings.threads):
            self._train(dataset, split)

    def _train(self, dataset: Dataset, split: LeaveOneOutSplit) -> None:
        s = self.settings
        torch.manual_seed(s.seed)
        rng = np.random.default_rng(s.seed)
        self.net = self._build(dataset.n_items)
        seqs = [q[-(s.max_len + 1):] for q in training_sequences(dataset, split) if len(q) >= self._min_train_len]
        if not seqs:
            raise ValueError("no training sequence is long enough to learn from")
        opt = torch.optim.Adam(self.net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        validate = Validator(split, s.valid_users, s.seed, s.valid_protocol, dataset.n_items)
        n_valid = len(validate)
        st = {"epoch": 0, "best": -1.0, "best_state": None, "bad": 0, "best_epoch": 0, "history": []}
        ckpt = Path(s.checkpoint) if s.checkpoint else None
        if ckpt is not None and ckpt.exists():
            st = self._resume(ckpt, opt, rng)
        started = time.monotonic()
        for epoch in range(st["epoch"] + 1, s.epochs + 1):
            self.net.train()
            total, n_batches = 0.0, 0
            batches = self._batches(seqs, rng)
            for idx in tqdm(batches, desc=f"{self.name} epoch {epoch}", leave=False, disable=not s.progress):
                loss = self._loss([seqs[i] for i in idx], rng)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
                n_batches += 1
            ndcg, hr = validate(self) if n_valid else (0.0, 0.0)
            names = validate.names
            st["history"].append({"epoch": epoch, "loss": total / max(n_batches, 1), f"valid_{names[0]}": ndcg,
                                  f"valid_{names[1]}": hr, "seconds": time.monotonic() - started})
            logger.info("%s epoch %d: loss %.4f, valid %s %.4f %s %.4f (%.0fs)", self.name, epoch,
                        total / max(n_batches, 1), names[0], ndcg, names[1], hr, time.monotonic() - started)
            st["epoch"] = epoch
            stop = False
            if not n_valid:
                st["best_state"], st["best_epoch"] = None, epoch
            elif ndcg > st["best"] + s.min_delta:
                st.update(best=ndcg, best_state=copy.deepcopy(self.net.state_dict()), bad=0, best_epoch=epoch)
            else:
                st["bad"] += 1
                stop = st["bad"] >= s.patience
                if stop:
                    logger.info("%s: early stop after epoch %d (best %d)", self.name, epoch, st["best_epoch"])
            if s.max_minutes and time.monotonic() - started > 60 * s.max_minutes and not stop:
                logger.info("%s: time budget of %.1f min reached after epoch %d", self.name, s.max_minutes, epoch)
                stop = True
            if ckpt is not None:
                self._checkpoint(ckpt, opt, rng, st)
            if stop:
                break
        if st["best_state"] is not None:
            self.net.load_state_dict(st["best_state"])
        self.best_epoch_, self.history_ = st["best_epoch"], st["history"]
        self.net.eval()

    def _checkpoint(self, path: Path, opt: torch.optim.Optimizer, rng: np.random.Generator, st: dict) -> None:
        """Everything needed to continue training after an interruption (written atomically)."""
        with atomic_file(path) as tmp:
            torch.save({"settings": self._resume_key(), "net": self.net.state_dict(), "opt": opt.state_dict(),
                        "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(), **st}, tmp)

    def _resume(self, path: Path, opt: torch.optim.Optimizer, rng: np.random.Generator) -> dict:
        try:
            saved = torch.load(path, weights_only=True)
        except Exception as exc:  # a torn or foreign file: say so rather than train from scratch silently
            raise ModelError(f"cannot resume from {path} ({exc}); delete it to start over.") from None
        if saved["settings"] != self._resume_key():
            raise ModelError(f"{path} was written with other settings; delete it or use the same settings.")
        self.net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        rng.bit_generator.state = json.loads(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        logger.info("%s: resuming after epoch %d from %s", self.name, saved["epoch"], path)
        return {k: saved[k] for k in ("epoch", "best", "best_state", "bad", "best_epoch", "history")}

    def _resume_key(self) -> str:
        ignore = {"checkpoint", "max_minutes", "progress", "threads", "epochs", "patience"}
        return json.dumps({k: v for k, v in asdict(self.settings).items() if k not in ignore}, sort_keys=True)

    _min_train_len = 2

    def _batches(self, seqs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        lengths = np.array([len(q) for q in seqs])
        order = np.lexsort((rng.random(len(seqs)), lengths))
        bs = self.settings.batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        rng.shuffle(batches)
        return batches

    # -- scoring -----------------------------------------------------------------------------
    def score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None = None,
              queries: Sequence[str] | None = None, users: np.ndarray | None = None) -> np.ndarray:
        self._check_fitted()
        with torch_threads(self.settings.threads):
            return self._score(histories, candidates)

    def _score(self, histories: Sequence[np.ndarray], candidates: np.ndarray | None) -> np.ndarray:
        was_training = self.net.training
        self.net.eval()
        # Score in length-sorted chunks so each chunk is padded to similar lengths, then restore order.
        order = np.argsort([min(len(h), self.settings.max_len) for h in histories], kind="stable")
        width = self.n_items if candidates is None else np.asarray(candidates).shape[1]
        out = np.empty((len(histories), width), dtype=np.float32)
        cand_all = None if candidates is None else np.asarray(candidates, dtype=np.int64)
        with torch.inference_mode():
            items, bias = self._item_matrix(), self._item_bias()
            for start in range(0, len(histories), 1024):
                idx = order[start : start + 1024]
                rep = self._encode([histories[i] for i in idx])
                if cand_all is None:
                    sc = rep @ items.T + (bias if bias is not None else 0)
                else:
                    cand = torch.from_numpy(cand_all[idx])
                    sc = torch.einsum("bh,bch->bc", rep, items[cand])
                    if bias is not None:
                        sc = sc + bias[cand]
                out[idx] = sc.float().numpy()
        self.net.train(was_training)
        return out

    # -- persistence -------------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path / STATE_FILE))

    def _load_state(self, path: Path) -> None:
        self.net = self._build(self.n_items)
        self.net.load_state_dict(load_file(str(path / STATE_FILE)))
        self.net.eval()


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Truncated-normal init for embeddings and linear layers (as in BERT4Rec/RecBole)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()


def gather_last(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Output at each sequence's last real position (position 0 for an empty history)."""
    idx = (lengths - 1).clamp(min=0)
    return h[torch.arange(h.size(0)), idx]



def softmax_loss(h: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor, n_items: int,
                 n_negatives: int, rng: np.random.Generator, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of `targets` (tokens 1..n_items) given hidden states h (N, H).

    `n_negatives` = 0: softmax over all items. Otherwise a sampled softmax: the true item against
    `n_negatives` items drawn uniformly once per batch and shared by all positions (accidental hits
    masked). Uniform sampling needs no log-Q correction; it cuts the cost of the output layer by
    n_items / n_negatives, which is most of the training time on a CPU.
    """
    if n_negatives <= 0 or n_negatives >= n_items:
        logits = h @ item_weight[1 : n_items + 1].T
        if bias is not None:
            logits = logits + bias
        return F.cross_entropy(logits, targets - 1)
    neg = torch.from_numpy(rng.integers(1, n_items + 1, size=n_negatives))
    pos_logit = (h * item_weight[targets]).sum(-1, keepdim=True)
    neg_logit = h @ item_weight[neg].T
    if bias is not None:
        pos_logit = pos_logit + bias[targets - 1, None]
        neg_logit = neg_logit + bias[neg - 1][None]
    neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], 1)
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))
