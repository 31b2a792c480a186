"""Resuming: the last checkpoint in the output folder, if it belongs to this run's model and mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from instructrec.errors import ModelError

log = logging.getLogger(__name__)


def resume_checkpoint(out_dir: str | Path, model_type: str, lora: bool) -> str | None:
    """The last `checkpoint-N` in `out_dir` (None when there is none), checked by `check_resume`."""
    out = Path(out_dir)
    checkpoint = get_last_checkpoint(str(out)) if out.is_dir() else None
    if checkpoint:
        check_resume(checkpoint, model_type, lora)
        log.info("resuming from %s", checkpoint)
    return checkpoint


def check_resume(checkpoint: str | Path, model_type: str, lora: bool) -> None:
    """Refuse to resume from checkpoints of another architecture or training mode."""
    ckpt = Path(checkpoint)
    is_adapter = (ckpt / "adapter_config.json").is_file()
    if is_adapter != lora:
        raise ModelError(
            f"{ckpt} is a {'LoRA' if is_adapter else 'full'} checkpoint but this run is "
            f"{'LoRA' if lora else 'full'} fine-tuning; use another --out or pass --no-resume"
        )
    config_file = ckpt / ("adapter_config.json" if is_adapter else "config.json")
    cfg = json.loads(config_file.read_text()) if config_file.is_file() else {}
    found = cfg.get("model_type")
    if not is_adapter and found and found != model_type:
        raise ModelError(
            f"{ckpt} holds a {found} checkpoint but the model is {model_type}; use another --out or pass --no-resume"
        )
