"""Resuming: the last checkpoint in the output folder, if it belongs to this run's model and mode."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from instructrec import distributed
from instructrec.errors import ModelError

TRAINER_STATE = "trainer_state.json"

log = logging.getLogger(__name__)


def complete_checkpoint(path: str | Path) -> bool:
    """Whether a `checkpoint-N` folder was written to the end: the Trainer writes
    `trainer_state.json` after the weights, optimizer, scheduler and RNG states, so a checkpoint
    whose state file is missing or cut short was interrupted (e.g. killed) while being saved."""
    try:
        json.loads((Path(path) / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return False
    return True


def resume_checkpoint(out_dir: str | Path, model_type: str, lora: bool) -> str | None:
    """The last complete `checkpoint-N` in `out_dir` (None when there is none), checked by
    `check_resume`. Incomplete checkpoints (a run killed while saving one) are removed."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    found = sorted((p for p in out.glob("checkpoint-*") if p.is_dir() and p.name[len("checkpoint-"):].isdigit()),
                   key=lambda p: int(p.name[len("checkpoint-"):]))
    complete = [p for p in found if complete_checkpoint(p)]
    if distributed.is_main():  # under several processes rank 0 removes; every rank picks the same one
        for p in found:
            if p not in complete:
                log.warning("removing %s: it was not written to the end (killed while saving it)", p)
                shutil.rmtree(p, ignore_errors=True)
    checkpoint = str(complete[-1]) if complete else None
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
