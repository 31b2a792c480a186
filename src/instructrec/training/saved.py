"""The output folder of a run: the best model (or adapter), its tokenizer and `instructrec.json`.

`instructrec.json` is what `load_model` and `instructrec score` read back: the base model (an
adapter is loaded on top of it), the backend kind and the prompt settings scoring must reuse.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from instructrec.atomic import atomic_write
from instructrec.model.backend import META_FILE, UNFINISHED_FILE, LoadedModel
from instructrec.training.settings import TrainSettings


def base_model_ref(model_spec: str) -> str:
    """The base model as `instructrec.json` records it: an absolute path for local files, else the spec."""
    path = Path(model_spec).expanduser()
    return str(path.resolve()) if path.exists() else model_spec


def output_meta(model_spec: str, loaded: LoadedModel, settings: TrainSettings, trainer: Any, metric: str,
                head: str = "title", collaborative: tuple[str, ...] = (),
                render: dict[str, Any] | None = None, item_tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """The content of `instructrec.json` (`head`: the ranking head trained, `model.listwise.HEADS`;
    `collaborative`: the first-stage input of its instructions, `LoadedModel.collaborative`;
    `render`: the prompt budget its instructions were cut to, `LoadedModel.render`; `item_tokens`:
    the shape of its collaborative soft tokens, `model.item_tokens`, saved beside it)."""
    args = trainer.args
    return {
        "base_model": base_model_ref(model_spec),
        "kind": loaded.kind,
        "head": head,
        **({"collaborative": list(collaborative)} if collaborative else {}),
        **({"render": dict(render)} if render else {}),
        **({"item_tokens": dict(item_tokens)} if item_tokens else {}),
        "lora": settings.lora,
        "global_step": trainer.state.global_step,
        "best_metric": trainer.state.best_metric,
        "metric": metric,
        "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "settings": {k: v for k, v in asdict(settings).items() if k != "prompt"},
        "prompt": asdict(settings.prompt),
    }


def save_output(trainer: Any, model_spec: str, loaded: LoadedModel, settings: TrainSettings, metric: str,
                head: str = "title", collaborative: tuple[str, ...] = (), render: dict[str, Any] | None = None,
                item_tokens: dict[str, int] | None = None) -> None:
    """Write the model (or adapter) the trainer holds, its tokenizer and `instructrec.json` to `out_dir`."""
    out = Path(settings.out_dir)
    trainer.save_model(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    atomic_write(out / META_FILE, json.dumps(output_meta(model_spec, loaded, settings, trainer, metric, head, collaborative, render, item_tokens), indent=2, default=str))
    (out / UNFINISHED_FILE).unlink(missing_ok=True)  # written last: the folder now loads


def mark_unfinished(out_dir: str | Path) -> None:
    """Mark `out_dir` as a training output being written (`load_model` refuses it until `save_output`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / UNFINISHED_FILE).write_text("training; this file is removed when the model is saved\n")
