"""Score candidate titles by their log-likelihood given an instruction (the paper's reranking).

Shared-prefix scoring: the instruction is processed once and reused for all its candidates.
Seq2seq models encode the instruction once and run the decoder on all candidates as one batch;
causal models compute the instruction's KV cache once, expand it along the batch and run only the
candidate tokens. Several instructions are handled per forward pass (left-padded prefixes with
explicit position ids, so padding does not shift positions). `naive_scores` is the reference
(one full forward per candidate); the fast path equals it within 1e-3.

A `PrefixCache` (causal models, opt-in: the server) keeps the KV cache of recent prompts: a new
prompt whose first tokens equal a stored prompt's (the same user's chat header, task statement and
history, with another request and other candidates after them) reuses those keys and values and
runs only the tokens after the shared part. `prefix_forward` is that forward pass, shared by this
head and the listwise head (`model.listwise`), whose cached path is the fast path of a server.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from instructrec.errors import DataError, ModelError
from instructrec.model.backend import LoadedModel
from instructrec.model.options import DEFAULT_NORMALIZE, Normalize
from instructrec.model.prompt import HistoryTrimmer, PromptEncoder, PromptSettings


@dataclass
class ScoringSettings:
    """Batching and normalisation for candidate scoring."""

    normalize: Normalize = DEFAULT_NORMALIZE
    """`mean`: average token log-likelihood (length-normalised); `sum`: total log-likelihood."""
    instruction_batch_size: int = 8
    """Instructions whose prefixes are computed in one forward pass."""
    candidate_batch_size: int | None = None
    """Candidate rows (over all instructions of a group) per decoder forward pass; None: 64 on a
    GPU, 16 on a CPU (each row holds a copy of its prompt's KV cache: on the 2-core CPU 16 rows
    scored the quickstart's zero-shot instructions 12 % faster than 64, at 1.5 GB peak instead of
    2.1 GB, benchmarks/RESULTS.md issue 12 fifth pass)."""

    def rows_per_pass(self, device: torch.device) -> int:
        if self.candidate_batch_size is not None:
            return self.candidate_batch_size
        return 64 if device.type == "cuda" else 16


def _base(model: Any) -> Any:
    """The transformers model under DDP/DeepSpeed wrappers (`.module`) and peft adapters."""
    while hasattr(model, "module") and not hasattr(model, "config"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _forward_params(model: Any) -> set[str]:
    return set(inspect.signature(_base(model).forward).parameters)


def cache_keyword(model: Any) -> str:
    """The forward argument that takes a KV cache: `cache` (newer transformers, `model.lean`) or `past_key_values`."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def supports_masked_logits(model: Any) -> bool:
    """Whether `logits_to_keep` accepts a boolean (batch, seq) mask (transformers >= 5.2x); older
    versions only take an int or a 1-D index, and the full LM head is computed instead."""
    if getattr(_base(model), "accepts_logits_mask", False):  # model.lean: without importing transformers
        return True
    import transformers.modeling_utils as mu

    return "logits_to_keep" in _forward_params(model) and hasattr(mu, "slice_logits_to_keep")


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if left:
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        else:
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
    return ids, mask


def length_groups(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in groups of at most `size`, prompts of similar length together: a group is padded
    to its longest prompt, so sorting first computes fewer padding tokens (each row's scores are
    those it gets alone, so the order changes no result)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + size] for start in range(0, len(order), size)]


def _shared_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens two id arrays have in common."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers cache, each (batch, kv_heads, seq, head_dim)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers < 4.56


def _make_cache(model: Any, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """The cache type `model` reads (transformers' `DynamicCache`, or its own `new_cache`) holding
    `layers` ((keys, values) per layer)."""
    own = getattr(_base(model), "new_cache", None)
    if own is not None:
        return own(layers)
    from transformers import DynamicCache

    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers < 5
        return DynamicCache.from_legacy_cache(tuple(layers))
    return DynamicCache(layers)


class PrefixCache:
    """A bounded LRU of prompts' KV caches, reused for the tokens a new prompt shares with one of them.

    Keyed by content, not by user: a known user's next request renders the same chat header, task
    statement and history before its request text and candidates, so those tokens (the longest
    common prefix of token ids) are taken from the cache; any two prompts share at least the chat
    header. Causal attention makes a token's keys and values depend only on the tokens up to it, so
    reuse is exact up to floating-point summation order. A new prompt replaces the stored one it
    shares at least a third of its tokens with (the same user's previous request of the same kind:
    header and history are 40-50 % of a MovieLens rerank prompt with 20 candidates), else it is added,
    the least recently used entry leaving when `max_entries` are held. Not thread-safe (one model
    thread uses it, like the model itself).
    """

    def __init__(self, max_entries: int = 32, min_shared: int = 8) -> None:
        if max_entries < 1 or min_shared < 1:
            raise ModelError(f"PrefixCache needs max_entries >= 1 and min_shared >= 1, got {max_entries}, {min_shared}")
        self.max_entries, self.min_shared = max_entries, min_shared
        self._entries: OrderedDict[int, tuple[np.ndarray, list[tuple[torch.Tensor, torch.Tensor]]]] = OrderedDict()
        self._next_key = 0
        self.tokens_reused = 0
        """Prompt tokens taken from the cache instead of computed (since creation)."""
        self.tokens_seen = 0
        """Prompt tokens scored through the cache (since creation)."""

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def lookup(self, ids: Sequence[int]) -> tuple[int | None, int]:
        """(entry key, shared token count) of the stored prompt sharing the most leading tokens with
        `ids`, at most `len(ids) - 1` (the last token is always run: its logits predict the answer);
        (None, 0) below `min_shared`."""
        arr = np.asarray(ids)
        best, best_len = None, 0
        for key, (stored, _) in self._entries.items():
            n = _shared_length(arr, stored)
            if n > best_len:
                best, best_len = key, n
        best_len = min(best_len, len(arr) - 1)
        if best is None or best_len < self.min_shared:
            return None, 0
        self._entries.move_to_end(best)
        return best, best_len

    def past(self, key: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The stored keys and values of the first `length` tokens of entry `key`, per layer."""
        return [(k[:, :, :length], v[:, :, :length]) for k, v in self._entries[key][1]]

    def store(self, ids: Sequence[int], layers: list[tuple[torch.Tensor, torch.Tensor]],
              replaces: int | None, shared: int) -> None:
        """Keep `layers` (batch 1, all of `ids`) as a prompt's KV cache (see the class docstring)."""
        if replaces is not None and replaces in self._entries and 3 * shared >= len(ids):
            del self._entries[replaces]
        self._entries[self._next_key] = (np.asarray(ids), layers)
        self._next_key += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def prefix_forward(model: Any, prompts: list[list[int]], cache: PrefixCache, pad_id: int, *,
                   cache_kw: str = "past_key_values", keep_last: bool = True) -> tuple[Any, torch.Tensor]:
    """The causal `model`'s forward pass over `prompts` with their shared first tokens taken from
    `cache` (and every prompt's full KV cache stored back); returns the model output (logits at the
    last position, which is every row's last real token: the new parts are left-padded; the full
    KV cache) and its (batch, width) attention mask. Used by both ranking heads.

    Row layout: [padding, cached part, padding, new part], the mask zero on padding and the
    positions counted over real tokens only, so each row computes what it would alone."""
    dev = next(model.parameters()).device
    found = [cache.lookup(p) for p in prompts]
    width = max(n for _, n in found)
    new_ids, new_mask = _pad([p[n:] for p, (_, n) in zip(prompts, found, strict=True)], pad_id, left=True)
    new_ids, new_mask = new_ids.to(dev), new_mask.to(dev)
    past_mask = torch.zeros((len(prompts), width), dtype=torch.long, device=dev)
    for i, (_, n) in enumerate(found):
        past_mask[i, width - n :] = 1
    kwargs: dict[str, Any] = {}
    if width:
        shapes = cache.past(next(k for k, _ in found if k is not None), 1)  # dtype and head shapes
        layers = []
        for layer, (k0, v0) in enumerate(shapes):
            keys = k0.new_zeros((len(prompts), k0.shape[1], width, k0.shape[3]))
            values = v0.new_zeros((len(prompts), v0.shape[1], width, v0.shape[3]))
            for i, (key, n) in enumerate(found):
                if key is not None:
                    k, v = cache.past(key, n)[layer]
                    keys[i, :, width - n :], values[i, :, width - n :] = k[0], v[0]
            layers.append((keys, values))
        kwargs[cache_kw] = _make_cache(model, layers)
    mask = torch.cat([past_mask, new_mask], dim=1)
    pos = past_mask.sum(-1, keepdim=True) + (new_mask.cumsum(-1) - 1).clamp(min=0)
    kwargs.update(input_ids=new_ids, attention_mask=mask, position_ids=pos, use_cache=True)
    out = model(**kwargs, logits_to_keep=1) if keep_last else model(**kwargs)
    full = _cache_layers(getattr(out, "cache", None) or out.past_key_values)
    for i, (prompt, (key, n)) in enumerate(zip(prompts, found, strict=True)):
        real = mask[i].nonzero().squeeze(1)
        cache.store(prompt, [(k[i : i + 1, :, real].clone(), v[i : i + 1, :, real].clone()) for k, v in full], key, n)
        cache.tokens_seen += len(prompt)
        cache.tokens_reused += n
    return out, mask


def prompt_forward(model: Any, prompts: list[list[int]], pad_id: int, *, prefix_cache: PrefixCache | None = None,
                   cache_kw: str = "past_key_values", keep_last: bool = True,
                   use_cache: bool = True) -> tuple[Any, torch.Tensor]:
    """The causal `model`'s forward pass over left-padded `prompts` (every row's last position is
    its last real token), through `prefix_cache` when given (`prefix_forward`); returns the model
    output and its attention mask. The one prompt pass of both ranking heads."""
    if prefix_cache is not None:
        return prefix_forward(model, prompts, prefix_cache, pad_id, cache_kw=cache_kw, keep_last=keep_last)
    dev = next(model.parameters()).device
    ids, mask = _pad(prompts, pad_id, left=True)
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # padding does not shift positions
    kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "use_cache": use_cache}
    return (model(**kwargs, logits_to_keep=1) if keep_last else model(**kwargs)), mask


class PromptScorer:
    """What both ranking heads share: the prompt encoder's truncation count and check, the device."""

    encoder: PromptEncoder
    model: Any

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def truncated(self) -> int:
        """Instructions whose history was cut to fit the context (also logged as warnings)."""
        return self.encoder.truncated

    def would_truncate(self, instruction: str) -> bool:
        """Whether scoring `instruction` cuts its history to fit `max_prompt_tokens`."""
        return len(self.encoder.render(instruction)) > self.encoder.settings.max_prompt_tokens


def normalized(sums: torch.Tensor, counts: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    """Answer scores from summed token log-likelihoods: per token (`mean`) or as they are (`sum`)."""
    return sums / counts if normalize == "mean" else sums


def _reduce(token_logprobs: torch.Tensor, mask: torch.Tensor, normalize: Normalize) -> torch.Tensor:
    return normalized((token_logprobs * mask).sum(-1), mask.sum(-1), normalize)


def answer_logprobs(model: Any, out: Any, mask: torch.Tensor, rows: Sequence[tuple[int, Sequence[int]]], pad_id: int,
                    *, per_pass: int, cache_kw: str = "past_key_values",
                    can_keep: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities (and token counts) of answers after their prompts: `out` and `mask`
    are `prompt_forward`'s over the prompts, `rows` pairs a prompt's index with one answer's token
    ids. Each prompt's KV cache is selected per answer row (`per_pass` rows per forward) and only
    the answer tokens run: the title head's scorer (and its prefix cache). Differentiable outside
    `torch.inference_mode`; training packs the answers instead (`packed_answer_logprobs`, no cache copies)."""
    dev = mask.device
    can_keep = supports_masked_logits(model) if can_keep is None else can_keep
    lengths = mask.sum(-1)
    first_logprobs = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # predicts each answer's first token
    layers = _cache_layers(getattr(out, "cache", None) or out.past_key_values)
    sums: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    for start in range(0, len(rows), per_pass):
        chunk = rows[start : start + per_pass]
        idx = torch.tensor([g for g, _ in chunk], device=dev)
        cids, cmask = _pad([a for _, a in chunk], pad_id, left=False)
        cids, cmask = cids.to(dev), cmask.to(dev)
        # a fresh cache of selected rows (index_select keeps the graph; the forward appends to it, not to `out`'s)
        chunk_cache = _make_cache(model, [(k.index_select(0, idx), v.index_select(0, idx)) for k, v in layers])
        width = cids.shape[1]
        cpos = lengths[idx, None] + torch.arange(width, device=dev)[None, :]
        # logits at position j predict token j+1: keep the positions with a real next token
        keep = torch.zeros_like(cmask, dtype=torch.bool)
        keep[:, :-1] = cmask[:, 1:].bool()
        kwargs = {"input_ids": cids, "attention_mask": torch.cat([mask[idx], cmask], dim=1), "position_ids": cpos,
                  "use_cache": True, cache_kw: chunk_cache}
        if can_keep:
            logits = model(**kwargs, logits_to_keep=keep).logits
            logits = logits if logits.dim() == 2 else logits[keep]
        else:
            logits = model(**kwargs).logits[keep]
        first = first_logprobs[idx].gather(1, cids[:, :1]).squeeze(1)
        rest = F.log_softmax(logits.float(), dim=-1).gather(1, cids[:, 1:][keep[:, :-1]][:, None]).squeeze(1)
        row_of = keep.nonzero()[:, 0]  # the answer row of each kept position, in `rest`'s order
        sums.append(first + torch.zeros_like(first).index_add(0, row_of, rest))
        counts.append(cmask.sum(-1).float())
    return torch.cat(sums), torch.cat(counts)


def packed_answer_logprobs(model: Any, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[Sequence[int]]],
                           pad_id: int, *, can_keep: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`answer_logprobs` in one forward pass without KV caches: each prompt and all its answers in one
    row, `[prompt, answer 1, answer 2, ...]`, under a block attention mask (an answer's tokens see the
    prompt and the earlier tokens of their own answer only) and position ids that restart at the
    prompt's length for every answer, so each answer gets the log-likelihood it gets alone after its
    prompt. Returns summed log-probabilities and token counts, answers in order (prompt 0's first).

    Why not the cached path: it copies each prompt's KV cache once per answer (`index_select`), and in
    training the gradients flow back through those copies; here every token is computed once and the
    attention mask does the sharing (the training loss of `objective: softmax` and the title head's
    scorer without a prefix cache; benchmarks/RESULTS.md, "packed candidates")."""
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    can_keep = supports_masked_logits(model) if can_keep is None else can_keep
    rows, segments, positions = [], [], []
    for prompt, cands in zip(prompts, answers, strict=True):
        if not cands or any(len(a) == 0 for a in cands):
            raise DataError("every prompt needs at least one non-empty answer to score")
        rows.append(list(prompt) + [t for a in cands for t in a])
        segments.append([0] * len(prompt) + [j + 1 for j, a in enumerate(cands) for _ in a])
        positions.append(list(range(len(prompt))) + [len(prompt) + i for a in cands for i in range(len(a))])
    ids, _ = _pad(rows, pad_id, left=False)
    width = ids.shape[1]
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (s, p) in enumerate(zip(segments, positions, strict=True)):
        seg[r, : len(s)], pos[r, : len(p)] = torch.tensor(s), torch.tensor(p)
    idx = torch.arange(width)
    causal = idx[None, :] <= idx[:, None]  # (query, key)
    sq, sk = seg[:, :, None], seg[:, None, :]
    allowed = causal[None] & (((sk == 0) & (sq >= 0)) | ((sq == sk) & (sq > 0)))
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # padding sees itself: no row without a key
    # an additive mask: transformers passes a 4-D mask through as it is, and every attention kernel adds it
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
    # which position predicts each answer token: the prompt's last for an answer's first, else the one before
    pred_row, pred_pos, target, owner = [], [], [], []
    n = 0
    for r, (prompt, cands) in enumerate(zip(prompts, answers, strict=True)):
        start = len(prompt)
        for a in cands:
            for i, tok in enumerate(a):
                pred_row.append(r)
                pred_pos.append(len(prompt) - 1 if i == 0 else start + i - 1)
                target.append(tok)
                owner.append(n)
            start += len(a)
            n += 1
    keep = torch.zeros((len(rows), width), dtype=torch.bool)
    keep[pred_row, pred_pos] = True
    kept_index = torch.full((len(rows), width), -1, dtype=torch.long)
    kept_index[keep] = torch.arange(int(keep.sum()))
    kwargs = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "position_ids": pos.to(dev), "use_cache": False}
    if can_keep:
        logits = model(**kwargs, logits_to_keep=keep.to(dev)).logits
        logits = logits if logits.dim() == 2 else logits[keep.to(dev)]
    else:
        logits = model(**kwargs).logits[keep.to(dev)]
    logprobs = F.log_softmax(logits.float(), dim=-1)
    token_lp = logprobs[kept_index[pred_row, pred_pos].to(dev), torch.tensor(target, device=dev)]
    owner_t = torch.tensor(owner, device=dev)
    sums = torch.zeros(n, device=dev, dtype=token_lp.dtype).index_add(0, owner_t, token_lp)
    counts = torch.zeros(n, device=dev).index_add(0, owner_t, torch.ones_like(token_lp))
    return sums, counts


class CandidateScorer(PromptScorer):
    """Log-likelihood of each candidate title given its instruction.

    >>> scorer = CandidateScorer(load_model("default"))
    >>> scorer.score(["I like racing games ..."], [["Gran Turismo 5", "FIFA 12"]])  # [array([..., ...])]
    """

    def __init__(
        self,
        model: LoadedModel,
        settings: ScoringSettings | None = None,
        prompt: PromptSettings | None = None,
        history_trimmer: HistoryTrimmer | None = None,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
        self.loaded = model
        self.prefix_cache = prefix_cache if model.kind == "causal" else None
        """Reuse of recent prompts' KV caches (causal models; see `PrefixCache`); None: every prompt is run."""
        self.model = model.model
        self.kind = model.kind
        self.settings = settings or ScoringSettings()
        self.encoder = PromptEncoder.for_model(model, prompt, history_trimmer)
        self.pad_id = model.tokenizer.pad_token_id
        params = _forward_params(self.model)
        self._cache_kw = cache_keyword(self.model)
        self._can_keep = supports_masked_logits(self.model)
        self._keep_last = "logits_to_keep" in params

    def score(
        self,
        instructions: Sequence[str],
        candidates: Sequence[Sequence[str]],
        normalize: Normalize | None = None,
    ) -> list[np.ndarray]:
        """One float64 array of scores per instruction, aligned with its candidates (higher = better)."""
        normalize = normalize or self.settings.normalize
        if normalize not in ("mean", "sum"):
            raise ModelError(f"normalize must be 'mean' or 'sum', not {normalize!r}")
        if len(instructions) != len(candidates):
            raise DataError(f"{len(instructions)} instructions but {len(candidates)} candidate lists")
        for i, cands in enumerate(candidates):
            if len(cands) == 0:
                raise DataError(f"instruction {i} has an empty candidate list; pass at least one candidate")
        out: list[np.ndarray] = [np.empty(0)] * len(instructions)
        all_prompts = [self.encoder.prompt_ids(t) for t in instructions]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for group in length_groups([len(p) for p in all_prompts], self.settings.instruction_batch_size):
                    prompts = [all_prompts[i] for i in group]
                    answers = [[self.encoder.answer_ids(c) for c in candidates[i]] for i in group]
                    run = self._score_causal if self.kind == "causal" else self._score_seq2seq
                    for i, scores in zip(group, run(prompts, answers, normalize), strict=True):
                        out[i] = scores
        finally:
            self.model.train(was_training)
        return out

    def rank(self, instruction: str, candidates: Sequence[str], normalize: Normalize | None = None) -> list[tuple[str, float]]:
        """Candidates with scores, best first."""
        scores = self.score([instruction], [candidates], normalize)[0]
        order = np.argsort(-scores, kind="stable")
        return [(candidates[i], float(scores[i])) for i in order]

    def _rows(self, answers: list[list[list[int]]]) -> list[tuple[int, list[int]]]:
        return [(g, a) for g, cands in enumerate(answers) for a in cands]

    def _split(self, flat: list[float], answers: list[list[list[int]]]) -> list[np.ndarray]:
        out, pos = [], 0
        for cands in answers:
            out.append(np.asarray(flat[pos : pos + len(cands)], dtype=np.float64))
            pos += len(cands)
        return out

    def _score_causal(self, prompts: list[list[int]], answers: list[list[list[int]]], normalize: Normalize) -> list[np.ndarray]:
        out, mask = prompt_forward(self.model, prompts, self.pad_id, prefix_cache=self.prefix_cache,
                                   cache_kw=self._cache_kw, keep_last=self._keep_last)
        sums, counts = answer_logprobs(self.model, out, mask, self._rows(answers), self.pad_id,
                                       per_pass=self.settings.rows_per_pass(self.device), cache_kw=self._cache_kw,
                                       can_keep=self._can_keep)
        flat = normalized(sums, counts, normalize).tolist()
        return self._split(flat, answers)

    def _score_seq2seq(self, prompts: list[list[int]], answers: list[list[list[int]]], normalize: Normalize) -> list[np.ndarray]:
        dev = self.device
        ids, mask = _pad(prompts, self.pad_id, left=False)
        ids, mask = ids.to(dev), mask.to(dev)
        from transformers.modeling_outputs import BaseModelOutput

        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        start_id = self._decoder_start_id()
        rows = self._rows(answers)
        flat: list[float] = []
        per_pass = self.settings.rows_per_pass(dev)
        for start in range(0, len(rows), per_pass):
            chunk = rows[start : start + per_pass]
            idx = torch.tensor([g for g, _ in chunk], device=dev)
            labels, lmask = _pad([a for _, a in chunk], self.pad_id, left=False)
            labels, lmask = labels.to(dev), lmask.to(dev)
            dec_in = torch.cat([torch.full_like(labels[:, :1], start_id), labels[:, :-1]], dim=1)
            out = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden[idx]),
                attention_mask=mask[idx],
                decoder_input_ids=dec_in,
                decoder_attention_mask=lmask,
            )
            token_lp = F.log_softmax(out.logits.float(), dim=-1).gather(2, labels[..., None]).squeeze(-1)
            flat.extend(_reduce(token_lp, lmask.float(), normalize).tolist())
        return self._split(flat, answers)

    def _decoder_start_id(self) -> int:
        cfg = _base(self.model).config
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is None:
            start = self.pad_id
        if start is None:
            raise ModelError("the seq2seq model has no decoder_start_token_id; set it in its config")
        return int(start)


def naive_scores(
    model: LoadedModel,
    instruction: str,
    candidates: Sequence[str],
    normalize: Normalize = DEFAULT_NORMALIZE,
    prompt: PromptSettings | None = None,
) -> np.ndarray:
    """Reference scoring: one full forward pass per candidate, instruction re-read every time.
    Used by the equivalence tests and as the benchmark baseline."""
    enc = PromptEncoder.for_model(model, prompt)
    p = enc.prompt_ids(instruction)
    dev = next(model.model.parameters()).device
    scores = []
    with torch.inference_mode():
        for cand in candidates:
            a = enc.answer_ids(cand)
            if model.kind == "causal":
                ids = torch.tensor([p + a], device=dev)
                logits = model.model(input_ids=ids).logits[0, len(p) - 1 : -1].float()
            else:
                out = model.model(input_ids=torch.tensor([p], device=dev), labels=torch.tensor([a], device=dev))
                logits = out.logits[0].float()
            lp = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(a, device=dev)[:, None]).squeeze(1)
            scores.append(float(lp.mean() if normalize == "mean" else lp.sum()))
    return np.asarray(scores, dtype=np.float64)
