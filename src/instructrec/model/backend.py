"""Load an LLM: seq2seq (T5 / Flan-T5) or causal decoder, from a hub id, a folder or a GGUF file.

`load_model(spec)` accepts
- `"default"`: the bundled SmolLM2-135M-Instruct (converted once into the cache directory),
- a local folder with `config.json` (a saved model or a training output),
- a local folder with `adapter_config.json` (a peft/LoRA adapter; its base model is loaded first),
- a `.gguf` file,
- a Hugging Face hub id, used from the local cache; downloaded only when the hub is reachable.
The backend kind is read from the config (`is_encoder_decoder`) and can be forced.

Why the network checks: with no network and no `HF_HUB_OFFLINE`, transformers retries for about
46 s before failing. Local paths are checked first, hub ids are tried cache-only first, and the hub
is probed with a short socket timeout before any download is attempted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from instructrec.errors import ModelError
from instructrec.model import defaults

if TYPE_CHECKING:  # torch is imported where a model is loaded: the CLI starts without it
    import torch

log = logging.getLogger(__name__)

ModelKind = Literal["seq2seq", "causal"]
DType = Literal["auto", "float32", "bfloat16", "float16"]
META_FILE = "instructrec.json"
UNFINISHED_FILE = ".instructrec-training"
"""Present in a training output folder from the start of `train` until its model and `instructrec.json`
are written: such a folder (a run still going, or killed) is refused, never loaded half-written."""
"""Written next to trained models/adapters: the base model spec and kind they were trained from."""


@dataclass
class LoadedModel:
    """A model with its tokenizer and backend kind, ready for scoring or training."""

    model: Any
    """A `PreTrainedModel` (or a `PeftModel` wrapping one)."""
    tokenizer: Any
    """The matching tokenizer; `pad_token` is always set."""
    kind: ModelKind
    """`seq2seq` (encoder-decoder) or `causal` (decoder-only)."""
    name: str
    """The spec it was loaded from (for logs and metadata)."""
    head: str = "title"
    """The ranking head it was trained for (`instructrec.json`): `title` (the paper's title
    likelihood; base models) or `listwise` (letter logits, `model.listwise`)."""
    collaborative: tuple[str, ...] = ()
    """The first-stage input its instructions were built with (`instructrec.json`): `notes` (ranks
    written next to the candidates) and/or `order` (candidates listed in the first stage's order).
    A reranker must give the same (`+RETRIEVER@note`, `@order`), or the model reads lists unlike
    the ones it was tuned on; `prior`: its scores are a residual over the first stage's z-scored
    scores (`@prior`), added with `prior_weight`."""
    render: dict[str, Any] = field(default_factory=dict)
    """The prompt budget its instructions were cut to (`instructrec.json`; `RenderSettings.budget`:
    history items and characters, title characters), empty for the default one. Its reranker
    renders with it, so served prompts are cut like the training ones."""
    tuned: bool = False
    """Trained by instructrec (its folder has an `instructrec.json`): an empty `render` then means
    the default budget, which its reranker keeps whatever the caller's budget for other models."""
    prior_weight: float = 0.0
    """The weight of the first-stage prior its scores are added to (`TrainSettings.prior_weight`;
    0: a model tuned without one)."""


def hub_is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"} or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout: float = 3.0) -> bool:
    """One short TCP connect to the hub endpoint (honours HF_ENDPOINT)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_dtype(dtype: DType, device: str) -> torch.dtype:
    """`auto`: bf16 on GPUs that have it, else fp32 (CPU fp16/bf16 matmuls are slow or inexact)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def detect_kind(config: Any) -> ModelKind:
    """seq2seq for encoder-decoder configs, causal for decoder-only LMs."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = getattr(config, "architectures", None) or []
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or any(a.endswith("ForCausalLM") for a in archs):
        return "causal"
    raise ModelError(
        f"model type {config.model_type!r} is neither an encoder-decoder (T5-like) nor a causal LM; "
        "use a seq2seq or causal language model"
    )


def _auto_class(kind: ModelKind) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


def _finish(model: Any, tokenizer: Any, kind: ModelKind, name: str, device: str,
            meta: dict[str, Any] | None = None) -> LoadedModel:
    """Check the tokenizer fits the model, set a pad token, move to the device, eval mode; `meta`
    (`instructrec.json`) gives what it was trained for."""
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ModelError(
            f"tokenizer/model mismatch for {name}: the tokenizer has {len(tokenizer)} tokens but the model's "
            f"embedding has {vocab}; load the tokenizer saved with this model"
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer of {name} has neither a pad nor an eos token; add a pad token")
        tokenizer.pad_token = tokenizer.eos_token
    meta = meta or {}
    if meta.get("item_tokens"):  # collaborative soft tokens: their table and projector are saved beside the model
        from instructrec.model import item_tokens

        item_tokens.load_into(model, name)
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind, name=name, head=meta.get("head", "title"),
                       collaborative=tuple(meta.get("collaborative", ())), render=dict(meta.get("render") or {}),
                       prior_weight=float((meta.get("settings") or {}).get("prior_weight") or 0.0),
                       tuned=bool(meta))


def load_gguf(path: Path, dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """Read a GGUF file (dequantised, fp32 unless `dtype`) into a trainable transformers model and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (bad magic bytes); pass a .gguf model, a folder or a hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=dtype or torch.float32)
    except ModelError:
        raise
    except Exception as exc:  # transformers raises many types for unsupported/corrupt GGUF
        raise ModelError(f"{path} could not be read as a GGUF language model ({exc}); check the file") from exc
    # A dequantised model is plain fp32: drop the quantizer so it trains and saves as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tokenizer


def _read_meta(folder: Path) -> dict[str, Any]:
    meta = folder / META_FILE
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _load_folder(folder: Path, kind: ModelKind | None, dtype: torch.dtype) -> tuple[Any, Any, ModelKind]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelError(f"{folder}/config.json cannot be read ({exc}); the folder is not a saved model") from exc
    detected = detect_kind(config)
    if kind is not None and kind != detected:
        raise ModelError(
            f"{folder} holds a {detected} model ({config.model_type}) but --kind {kind} was asked; "
            "drop the option or pick a matching model"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelError(f"no usable tokenizer in {folder} ({exc}); save the tokenizer with the model") from exc
    try:
        model, info = _auto_class(detected).from_pretrained(str(folder), dtype=dtype, output_loading_info=True)
    except Exception as exc:  # size mismatches, missing weight files, wrong architecture
        raise ModelError(f"the weights in {folder} do not load as a {config.model_type} model ({exc})") from exc
    # transformers only warns and initialises randomly when weights are missing: refuse instead
    missing = sorted(info.get("missing_keys") or []) + [str(k) for k in info.get("mismatched_keys") or []]
    if missing:
        raise ModelError(
            f"the weights in {folder} do not load as a {config.model_type} model: {len(missing)} tensors are "
            f"missing or mismatched (e.g. {missing[0]}); the folder mixes files of another architecture"
        )
    return model, tokenizer, detected


_PLAIN_LORA = {"peft_type": "LORA", "use_dora": False, "use_rslora": False, "fan_in_fan_out": False,
               "bias": "none", "lora_bias": False}
"""Adapter settings `_merge_lora` folds in itself; any other adapter goes through peft."""


def _merge_lora(model: Any, folder: Path, cfg: dict[str, Any]) -> bool:
    """Fold a plain LoRA adapter into `model`'s weights in place (W += alpha/r * B @ A), without
    importing peft (about 0.3 s) or wrapping every layer; False (model untouched) for any adapter
    this does not cover, which then goes through peft."""
    import torch
    from safetensors.torch import load_file

    weights_file = folder / "adapter_model.safetensors"
    if (any(cfg.get(k, v) != v for k, v in _PLAIN_LORA.items()) or cfg.get("modules_to_save")
            or cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("trainable_token_indices")
            or not weights_file.is_file()):
        return False
    tensors = load_file(str(weights_file))
    pairs: dict[str, tuple[Any, Any]] = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            name = key.removesuffix(".lora_A.weight")
            b_key = name + ".lora_B.weight"
            if b_key not in tensors:
                return False
            pairs[name.removeprefix("base_model.model.")] = (tensors[key], tensors[b_key])
    if not pairs or len(pairs) * 2 != len(tensors):
        return False
    try:
        layers = {name: model.get_submodule(name) for name in pairs}
    except AttributeError:
        return False
    if any(not isinstance(m, torch.nn.Linear) or m.weight.shape != (b.shape[0], a.shape[1])
           for m, (a, b) in ((layers[n], pairs[n]) for n in pairs)):
        return False
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    with torch.no_grad():
        for name, (a, b) in pairs.items():
            weight = layers[name].weight
            if weight.dtype == torch.float32:
                weight.addmm_(b.float(), a.float(), alpha=scale)  # in place: no temporary the size of W
            else:
                weight += (scale * (b.float() @ a.float())).to(weight.dtype)
    return True


def _load_tokenizer(folder: Path, lean: bool = False) -> Any:
    if lean:
        from instructrec.model.lean import LeanTokenizer

        return LeanTokenizer(folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _load_adapter(folder: Path, kind: ModelKind | None, dtype: torch.dtype, device: str,
                  merge: bool = False, lean: bool = False) -> LoadedModel:
    meta = _read_meta(folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    base_spec = meta.get("base_model") or cfg.get("base_model_name_or_path")
    if not base_spec:
        raise ModelError(f"{folder} is an adapter without a base model name; pass the base model with --model")
    # a base that is itself an adapter (training continued from a tuned model) is folded in first, as
    # `training.build_model` did before training this one: wrapped unmerged, peft nests the two adapters
    # and finds none of this adapter's keys
    base = load_model(base_spec, kind=kind or meta.get("kind"), dtype=dtype_name(dtype), device="cpu",
                      merge_adapter=True, lean=lean)
    is_lean = lean and _is_lean(base.model)
    tokenizer = base.tokenizer
    if (folder / "tokenizer_config.json").is_file():
        tokenizer = _load_tokenizer(folder, lean=is_lean and (folder / "tokenizer.json").is_file())
    if merge and _merge_lora(base.model, folder, cfg):
        return _finish(base.model, tokenizer, base.kind, str(folder), device, meta)
    if is_lean:  # an adapter `_merge_lora` does not fold: peft wraps transformers models only
        return _load_adapter(folder, kind, dtype, device, merge)
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base.model, str(folder))
    except Exception as exc:
        raise ModelError(
            f"the adapter in {folder} does not fit its base model {base_spec} ({exc}); "
            "it was trained on another architecture"
        ) from exc
    if merge:
        model = model.merge_and_unload()
    return _finish(model, tokenizer, base.kind, str(folder), device, meta)


def dtype_name(dtype: torch.dtype) -> DType:
    import torch

    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]  # type: ignore[return-value]


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or os.sep * 2 in spec or spec.count("/") > 1


def load_model(
    spec: str | Path,
    kind: ModelKind | None = None,
    *,
    dtype: DType = "auto",
    device: str | None = None,
    merge_adapter: bool = False,
    lean: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer from `spec` (see the module docstring); one `ModelError` with
    what to do when it cannot be found or used.

    `merge_adapter`: for inference only, fold a LoRA adapter into the base weights: forwards skip
    peft's per-layer adapter branches (the gain was not measured cleanly on the shared CPU box), but
    the result is a plain model that cannot be trained further as an adapter.

    `lean`: for inference only, load a Llama model of a configuration `model.lean` covers (and its
    tokenizer) without importing transformers: the cold start of `recommend` and `serve`; any other
    model loads through transformers as without it."""
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    spec_str = str(spec)
    if spec_str == defaults.DEFAULT_MODEL_NAME:
        folder = defaults.default_model_dir()
        if lean and kind != "seq2seq" and (found := _load_lean(folder, torch_dtype)):
            return _finish(*found, "causal", spec_str, device)
        model, tokenizer, detected = _load_folder(folder, kind, torch_dtype)
        return _finish(model, tokenizer, detected, spec_str, device)
    path = Path(spec_str).expanduser()
    if path.is_file():
        if kind == "seq2seq":
            raise ModelError(f"{path}: GGUF files hold causal models; drop --kind seq2seq")
        model, tokenizer = load_gguf(path, torch_dtype)
        return _finish(model, tokenizer, "causal", spec_str, device)
    if path.is_dir():
        if (path / UNFINISHED_FILE).exists():
            raise ModelError(f"{path} is a training output that is not finished (still training, or killed): rerun "
                             "the same `instructrec train` command to finish it, or load one of its checkpoint-N folders")
        if (path / "adapter_config.json").is_file():
            return _load_adapter(path, kind, torch_dtype, device, merge_adapter, lean)
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path} is a folder without config.json or adapter_config.json; point --model at a saved "
                "model folder, a training output, a .gguf file, a hub id or 'default'"
            )
        if lean and kind != "seq2seq" and (found := _load_lean(path, torch_dtype)):
            return _finish(*found, "causal", spec_str, device, _read_meta(path))
        model, tokenizer, detected = _load_folder(path, kind, torch_dtype)
        return _finish(model, tokenizer, detected, spec_str, device, _read_meta(path))
    if isinstance(spec, Path) or _looks_like_path(spec_str):
        raise ModelError(f"model path {path} does not exist; check the path or use --model default")
    return _load_hub(spec_str, kind, torch_dtype, device)


def _is_lean(model: Any) -> bool:
    from instructrec.model.lean import LeanLlama

    return isinstance(model, LeanLlama)


def _load_lean(folder: Path, dtype: torch.dtype) -> tuple[Any, Any] | None:
    """`model.lean.load_lean` (None: a model it does not cover), imported only when asked for."""
    from instructrec.model.lean import load_lean

    return load_lean(folder, dtype)


def _load_hub(repo_id: str, kind: ModelKind | None, dtype: torch.dtype, device: str) -> LoadedModel:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:
        folder = None
    if folder is None:
        if hub_is_offline() or not hub_reachable():
            raise ModelError(
                f"model {repo_id!r} is not in the local Hugging Face cache and the hub cannot be reached"
                f"{' (HF_HUB_OFFLINE is set)' if hub_is_offline() else ''}; download it where there is "
                f"network (`hf download {repo_id}`) and copy the folder here, pass a local folder or .gguf "
                "file, or use --model default"
            )
        try:
            folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
        except Exception as exc:
            raise ModelError(f"model {repo_id!r} could not be downloaded ({exc}); check the id") from exc
    model, tokenizer, detected = _load_folder(Path(folder), kind, dtype)
    return _finish(model, tokenizer, detected, repo_id, device)
