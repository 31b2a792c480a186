"""Inference-only loading of Llama-family models in plain torch: the cold start of `recommend` and `serve`.

Why this is hand-written instead of transformers (issue 12, "fast start"): on the 2-core CPU box
`import torch` takes about 1.8 s and transformers' Llama model and tokenizer classes about 3.8 s
more (distributed tensors, masking utilities, losses pulling in scipy), most of the 5 s a cold
`instructrec recommend` may take, while scoring a prompt needs none of it. This module is the
forward pass of `LlamaForCausalLM` (RMSNorm, rotary positions, grouped-query attention through
torch's fused `scaled_dot_product_attention`, SwiGLU MLP) for exactly the configurations
`supports_config` accepts, with the call the scorers make (`input_ids`, `attention_mask`,
`position_ids`, `past_key_values`, `use_cache`, `logits_to_keep`) and a cache with the two methods
they use; the tokenizer is the same `tokenizer.json` read by the `tokenizers` library itself and
the chat template rendered by jinja2 as transformers renders it. Anything else (other
architectures, rope scaling, biases, training) loads through transformers as before, and the
outputs match transformers' within float tolerance (`tests/model/test_lean.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instructrec.errors import ModelError

WEIGHTS_FILE = "model.safetensors"


def supports_config(cfg: dict[str, Any]) -> bool:
    """Whether `config.json` describes a model this module computes exactly as transformers does."""
    rope = cfg.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    return (cfg.get("model_type") == "llama" and cfg.get("architectures", ["LlamaForCausalLM"]) == ["LlamaForCausalLM"]
            and cfg.get("hidden_act", "silu") == "silu" and not cfg.get("attention_bias", False)
            and not cfg.get("mlp_bias", False) and cfg.get("rope_scaling") in (None, {}) and rope_type == "default"
            and cfg.get("pretraining_tp", 1) == 1 and not cfg.get("quantization_config"))


def supports_folder(folder: Path) -> bool:
    """A saved full model (config, safetensors weights, fast tokenizer) of a supported configuration."""
    if not all((folder / f).is_file() for f in ("config.json", WEIGHTS_FILE, "tokenizer.json")):
        return False
    try:
        return supports_config(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    model_type: str = "llama"

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> LlamaConfig:
        heads = int(cfg["num_attention_heads"])
        rope = cfg.get("rope_parameters") or {}
        return cls(
            vocab_size=int(cfg["vocab_size"]), hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]), num_hidden_layers=int(cfg["num_hidden_layers"]),
            num_attention_heads=heads, num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))


class CacheLayer:
    """One layer's keys and values, (batch, kv_heads, seq, head_dim): the fields the scorers read."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values = keys, values


class KVCache:
    """The keys and values of the tokens run so far, per layer; extended in place by each forward
    (as transformers' `DynamicCache`), `batch_select_indices` keeps the given rows."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.layers = [CacheLayer(k, v) for k, v in layers or []]

    def update(self, index: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if index == len(self.layers):
            self.layers.append(CacheLayer(keys, values))
        else:
            layer = self.layers[index]
            layer.keys = torch.cat([layer.keys, keys], dim=-2)
            layer.values = torch.cat([layer.values, values], dim=-2)
        return self.layers[index].keys, self.layers[index].values

    def length(self) -> int:
        return self.layers[0].keys.shape[-2] if self.layers else 0

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[indices], layer.values[indices]


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    past_key_values: KVCache | None = None


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:
        """No random initialisation: the weights come from the checkpoint."""


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        """As `_Linear.reset_parameters`."""


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """Rotary inverse frequencies (`rope_type: default`), computed as transformers does."""
    return 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, index: int) -> None:
        super().__init__()
        self.index, self.heads, self.kv_heads, self.head_dim = index, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = _Linear(cfg.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = _Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = _Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = _Linear(self.heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(self.index, k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and n > 1,
                                             enable_gqa=self.kv_heads != self.heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = _Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = _Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = _Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig, index: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, index)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaBody(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = _Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LeanLlama(nn.Module):
    """`LlamaForCausalLM`'s inference forward (module names as transformers', so its safetensors
    and LoRA adapters load unchanged)."""

    accepts_logits_mask = True
    """`logits_to_keep` takes a (batch, seq) bool mask (`model.scoring.supports_masked_logits`)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = _Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", _inv_freq(cfg), persistent=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    @staticmethod
    def new_cache(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> KVCache:
        return KVCache(layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: KVCache | None = None,
                use_cache: bool = False, logits_to_keep: int | torch.Tensor = 0) -> CausalLMOutput:
        b, n = input_ids.shape
        past = past_key_values.length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + n, device=input_ids.device)[None].expand(b, n)
        cache = past_key_values if past_key_values is not None else (KVCache() if use_cache else None)
        freqs = position_ids[:, None, :, None].float() * self.inv_freq[None, None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        x = self.model.embed_tokens(input_ids)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        mask = _attention_mask(attention_mask, b, n, past, x.device)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, cache)
        x = self.model.norm(x)
        if isinstance(logits_to_keep, torch.Tensor):  # a (batch, seq) bool mask: the kept rows, flattened
            x = x[logits_to_keep] if logits_to_keep.dtype == torch.bool else x[:, logits_to_keep]
        elif logits_to_keep:
            x = x[:, -logits_to_keep:]
        return CausalLMOutput(self.lm_head(x), cache if use_cache else None)


def _attention_mask(attention_mask: torch.Tensor | None, b: int, n: int, past: int,
                    device: torch.device) -> torch.Tensor | None:
    """The (batch, 1, n, past + n) boolean mask: causal over the row's index, keys where
    `attention_mask` is 1; None (the fused causal kernel) when nothing is masked out. A query with
    no visible key (left padding) may see itself, so that no NaN reaches the real tokens (its own
    output is never read). A 4-D mask (boolean, or additive floats: packed candidates,
    `model.scoring.packed_answer_logprobs`) is the caller's own and is used as it is, as transformers does."""
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    if attention_mask is None or bool(attention_mask.all()):
        if past == 0:
            return None
        attention_mask = torch.ones((b, past + n), dtype=torch.long, device=device)
    keys = torch.arange(past + n, device=device)[None, :]
    queries = (torch.arange(n, device=device) + past)[:, None]  # each new token's index in the row
    allowed = (keys <= queries)[None] & attention_mask[:, None, :].bool()
    allowed |= (keys == queries)[None]
    return allowed[:, None]


def load_lean_model(folder: Path, dtype: torch.dtype) -> LeanLlama:
    """A `LeanLlama` with the weights of `folder` (see `supports_folder`); a `ModelError` when they do not fit."""
    from safetensors.torch import load_file

    cfg = LlamaConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = LeanLlama(cfg)  # uninitialised (no page touched) until the checkpoint's tensors are assigned
    state = load_file(str(folder / WEIGHTS_FILE))
    if cfg.tie_word_embeddings and "model.embed_tokens.weight" in state:  # one tensor, tied again below
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"the weights in {folder} do not load as a {cfg.model_type} model ({exc})") from exc
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


class LeanTokenizer:
    """The slice of transformers' fast-tokenizer interface the prompt encoder and scorers use, over
    the same `tokenizer.json` (the `tokenizers` library is what transformers' fast tokenizers run)."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        cfg = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}
        template = folder / "chat_template.jinja"
        self.chat_template: str | None = template.read_text() if template.is_file() else cfg.get("chat_template")
        self.bos_token, self.eos_token = _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token"))
        self.pad_token, self.unk_token = _token_text(cfg.get("pad_token")), _token_text(cfg.get("unk_token"))
        self.padding_side, self.truncation_side = cfg.get("padding_side", "right"), cfg.get("truncation_side", "right")
        self._template: Any = None

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False) -> dict[str, list[Any]]:
        enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
        out: dict[str, list[Any]] = {"input_ids": list(enc.ids), "attention_mask": [1] * len(enc.ids)}
        if return_offsets_mapping:
            out["offset_mapping"] = [tuple(o) for o in enc.offsets]
        return out

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = False,
                            tokenize: bool = True) -> Any:
        """The chat template rendered as transformers renders it (sandboxed jinja2, trimmed blocks)."""
        if not self.chat_template:
            raise ModelError("the tokenizer has no chat template")
        if self._template is None:
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ModelError(f"the chat template refused the messages: {message}")

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.globals["raise_exception"] = raise_exception
            self._template = env.from_string(self.chat_template)
        text = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token or "", eos_token=self.eos_token or "",
                                     pad_token=self.pad_token or "", unk_token=self.unk_token or "")
        return self(text, add_special_tokens=False)["input_ids"] if tokenize else text


def _token_text(token: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def load_lean(folder: Path, dtype: torch.dtype) -> tuple[LeanLlama, LeanTokenizer] | None:
    """The model and tokenizer of `folder`, or None when it is not a model this module covers
    (`supports_folder`: load it through transformers)."""
    if not supports_folder(folder):
        return None
    return load_lean_model(folder, dtype), LeanTokenizer(folder)
