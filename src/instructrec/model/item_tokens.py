"""Collaborative soft tokens (issue 15, lever 2; LLaRA, arXiv 2312.02445): every item shown in an
instruction is followed by one extra input token whose embedding is a first-stage model's item
vector (SASRec's item embedding) projected into the LLM's input embedding space.

    ... Halo 3 <|item:17|>; FIFA 12 <|item:4|> ...
    1. Gran Turismo 5 <|item:912|>

How it is carried: the renderer writes a marker `<|item:INDEX|>` after each history and candidate
title (`RenderSettings.item_tokens`); the prompt encoder turns each marker into ONE token id past
the text vocabulary (`offset + INDEX`, `PromptEncoder.item_offset`); the model's input embedding is
replaced by `ItemTokenEmbedding`, which looks text ids up as before and maps ids past the vocabulary
through `projector(table[INDEX])`. The item identity is in the token ids, so every forward path
(shared-prefix scoring, the prefix cache, packed training rows, both heads) runs unchanged, and
prompts with equal ids have equal embeddings.

The table (the first stage's item vectors, standardised) is frozen; the projector (a 2-layer MLP,
as LLaRA's) trains with the LoRA adapter and is saved next to it in `item_tokens.safetensors`, with
the table, so a tuned model carries its collaborative input and serves without its first stage.
Markers are hand-parsed rather than added to the tokenizer as special tokens: 16,859 added tokens
would resize the vocabulary, the tied LM head and every saved adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from instructrec.errors import ModelError

__all__ = ["ItemTokenEmbedding", "attach", "detach", "find", "install", "item_table", "load_into", "meta", "save"]

ITEM_TOKENS_FILE = "item_tokens.safetensors"
DEFAULT_HIDDEN = 256


class ItemTokenEmbedding(nn.Module):
    """The model's input embedding with one soft token per item past the text vocabulary."""

    def __init__(self, base: nn.Embedding, table: torch.Tensor, hidden: int = DEFAULT_HIDDEN) -> None:
        super().__init__()
        self.base = base
        self.offset = int(base.num_embeddings)
        # standardised so one init of the projector fits any first stage's embedding scale
        table = table.float()
        self.register_buffer("table", (table - table.mean(0)) / table.std().clamp(min=1e-8), persistent=False)
        dim = int(base.embedding_dim)
        self.item_projector = nn.Sequential(nn.Linear(table.shape[1], hidden), nn.GELU(), nn.Linear(hidden, dim))
        with torch.no_grad():  # start at the text embeddings' scale, so the first steps do not swamp the prompt
            self.item_projector[2].bias.zero_()
            spread = self.item_projector(self.table[:4096]).std().item()
            self.item_projector[2].weight.mul_(base.weight.float().std().item() / max(spread, 1e-8))
        self.item_projector.to(base.weight.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The text embedding matrix (tied LM heads and tooling read `get_input_embeddings().weight`)."""
        return self.base.weight

    @property
    def num_embeddings(self) -> int:
        return self.offset

    @property
    def embedding_dim(self) -> int:
        return int(self.base.embedding_dim)

    @property
    def rows(self) -> int:
        """Items with a soft token (indices 0..rows-1)."""
        return int(self.table.shape[0])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_item = ids >= self.offset
        out = self.base(torch.where(is_item, torch.zeros_like(ids), ids))
        if not bool(is_item.any()):
            return out
        items = (ids[is_item] - self.offset).to(self.table.device)
        vectors = self.item_projector(self.table[items].to(self.item_projector[0].weight.dtype))
        return out.masked_scatter(is_item[..., None], vectors.to(out.dtype))


def item_table(retriever: Any, name: str) -> np.ndarray:
    """The item embeddings of a fitted sequential retriever (`name`: how the caller calls it, for the
    error): the table of a model's item tokens. The recipe runner and `instructrec train` both use it."""
    if not hasattr(retriever, "item_vectors"):
        raise ModelError(f"{name} is a {type(retriever).__name__}, which has no item embeddings for item tokens; "
                         "give a sequential retriever (sasrec, gru4rec or a variant of them).")
    return retriever.item_vectors()


def find(model: Any) -> ItemTokenEmbedding | None:
    """The model's `ItemTokenEmbedding` (under peft/DDP wrappers too), None without one."""
    return next((m for m in model.modules() if isinstance(m, ItemTokenEmbedding)), None)


def install(model: Any, table: np.ndarray | torch.Tensor, hidden: int = DEFAULT_HIDDEN) -> ItemTokenEmbedding:
    """Replace `model`'s input embedding by an `ItemTokenEmbedding` over `table` (rows: items);
    returns it (its `item_projector` is what trains)."""
    if find(model) is not None:
        raise ModelError("the model has item tokens already; load its base model to install new ones")
    base = model.get_input_embeddings()
    table_t = torch.as_tensor(np.asarray(table, dtype=np.float32))
    if table_t.dim() != 2 or table_t.shape[0] < 1:
        raise ModelError(f"an item table must be (items, dim), not {tuple(table_t.shape)}")
    return attach(model, ItemTokenEmbedding(base, table_t, hidden).to(base.weight.device))


def _swap(model: Any, old: nn.Module, new: nn.Module) -> None:
    for name, module in model.named_modules():
        if module is old:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, new)
            return
    raise ModelError("the model's input embedding is not one of its submodules; item tokens cannot be installed")


def attach(model: Any, wrapper: ItemTokenEmbedding) -> ItemTokenEmbedding:
    """Put `wrapper` in place of `model`'s input embedding (its own `base`); returns it."""
    _swap(model, wrapper.base, wrapper)
    return wrapper


def detach(model: Any) -> ItemTokenEmbedding | None:
    """Take `model`'s item tokens out (its plain embedding back in place) and return them, None
    without any. Training wraps the model in LoRA without them (a LoRA on all linear layers would
    otherwise wrap the projector too) and attaches them again after."""
    found = find(model)
    if found is not None:
        _swap(model, found, found.base)
    return found


def meta(model: Any) -> dict[str, int] | None:
    """What `instructrec.json` records of `model`'s item tokens (rows, dim, hidden), None without them."""
    found = find(model)
    if found is None:
        return None
    return {"rows": found.rows, "dim": int(found.table.shape[1]), "hidden": int(found.item_projector[0].out_features)}


def save(model: Any, folder: str | Path) -> dict[str, int]:
    """Write the item table and projector to `folder/item_tokens.safetensors`; returns `meta(model)`."""
    from safetensors.torch import save_file

    found = find(model)
    if found is None:
        raise ModelError("the model has no item tokens to save")
    tensors = {"table": found.table.detach().float().cpu().contiguous()}
    tensors.update({f"projector.{k}": v.detach().float().cpu().contiguous()
                    for k, v in found.item_projector.state_dict().items()})
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(Path(folder) / ITEM_TOKENS_FILE))
    return meta(model)  # type: ignore[return-value]


def load_into(model: Any, folder: str | Path) -> ItemTokenEmbedding:
    """Install the item tokens saved in `folder` into `model` (installing them first when it has none):
    the table as saved (already standardised) and the trained projector."""
    from safetensors.torch import load_file

    path = Path(folder) / ITEM_TOKENS_FILE
    if not path.is_file():
        raise ModelError(f"{folder} records item tokens but has no {ITEM_TOKENS_FILE}; copy the whole model folder")
    tensors = load_file(str(path))
    found = find(model)
    if found is None:
        hidden = int(tensors["projector.0.weight"].shape[0])
        found = install(model, tensors["table"], hidden)
    found.table = tensors["table"].to(found.table.device)  # saved standardised: no second standardisation
    state = {k.removeprefix("projector."): v for k, v in tensors.items() if k.startswith("projector.")}
    dtype = found.item_projector[0].weight.dtype
    found.item_projector.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    return found
