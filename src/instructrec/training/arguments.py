"""`TrainSettings` -> the transformers `TrainingArguments` of the run."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainingArguments

from instructrec.errors import ModelError
from instructrec.training.compat import sampling_args, warmup_args
from instructrec.training.settings import Precision, TrainSettings


def precision_flags(precision: Precision) -> dict[str, bool]:
    """`bf16` / `fp16` for the Trainer; `auto` picks by the GPU, and half precision needs one."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision != "fp32" and not cuda:
        raise ModelError(f"{precision} training needs a GPU here; use --precision fp32 (or auto) on CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(settings: TrainSettings, evaluate: bool, metric: str) -> TrainingArguments:
    """Checkpoints every `eval_steps`; with `evaluate`, evaluation as often and the best model by
    `metric` (`hr@1` or `loss`) at the end."""
    return TrainingArguments(
        output_dir=str(Path(settings.out_dir)),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size or settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.effective_learning_rate,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        **warmup_args(settings.warmup),
        lr_scheduler_type=settings.lr_scheduler,
        logging_steps=settings.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=settings.save_total_limit,
        load_best_model_at_end=evaluate,
        metric_for_best_model=metric if evaluate else None,
        greater_is_better=metric == "hr@1" if evaluate else None,
        prediction_loss_only=True,
        **sampling_args(settings.group_by_length),
        remove_unused_columns=False,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision_flags(settings.precision),
    )
