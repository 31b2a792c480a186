"""Instruction tuning with the transformers Trainer: full fine-tuning or LoRA.

What is custom (and why): `compute_loss` puts the loss on answer tokens only (`loss.py`);
`evaluate` adds HR@1 over the candidates of the validation reranking (T3) records, which picks
the best checkpoint (`validation.py`); a callback adds examples/s to the progress bar
(`progress.py`). Everything else (DDP/FSDP/DeepSpeed via `accelerate launch`, mixed precision,
gradient accumulation, length-grouped sampling, checkpoints in safetensors, resume, seeds) is the
Trainer's, configured from `TrainSettings` (`settings.py`, `arguments.py`). Resuming is guarded
by `resume.py`; the output folder is written by `saved.py`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from instructrec import distributed
from instructrec.errors import DataError
from instructrec.model import item_tokens
from instructrec.model.backend import LoadedModel, ModelKind, load_model
from instructrec.model.prompt import PromptEncoder
from instructrec.training.arguments import training_arguments
from instructrec.training.collate import InstructionCollator
from instructrec.training.data import (
    fit_prior_weight,
    is_listwise,
    load_instruction_records,
    record_prior,
    records_collaborative,
    records_head,
    records_render,
    reranking_records,
    tokenize_records,
)
from instructrec.training.loss import answer_only_loss, candidates_softmax_loss
from instructrec.training.progress import ThroughputCallback
from instructrec.training.resume import resume_checkpoint
from instructrec.training.saved import mark_unfinished, save_output
from instructrec.training.settings import TrainResult, TrainSettings
from instructrec.training.validation import CandidateHitRate

__all__ = ["InstructionTrainer", "TrainResult", "TrainSettings", "best_eval_metrics", "build_model", "train"]

log = logging.getLogger(__name__)


class InstructionTrainer(Trainer):
    """Trainer with the answer-only loss and HR@1 over validation candidates."""

    def __init__(self, *args: Any, kind: ModelKind, hit_rate: CandidateHitRate | None = None,
                 settings: TrainSettings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.hit_rate = hit_rate
        self.settings = settings
        # the loss is divided by the accumulated answer-token count, as HF models do themselves
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        num_items = num_items_in_batch if model.training else None
        loss = answer_only_loss(model, self.kind, inputs, num_items)
        if num_items is not None and self.args.average_tokens_across_devices:
            # num_items counts answer tokens on every process and DDP averages gradients: scale
            # back up by the process count, as Trainer.compute_loss does for built-in losses
            loss = loss * self.accelerator.num_processes
        if "candidate_ids" in inputs:  # the `softmax` objective: a mean over this batch's lists
            softmax = candidates_softmax_loss(model, inputs, self.processing_class.pad_token_id,
                                              self.settings.eval_normalize, self.settings.softmax_temperature,
                                              self.settings.prior_weight or 0.0)
            loss = loss + softmax / (self.args.gradient_accumulation_steps if model.training else 1)
        return (loss, {}) if return_outputs else loss

    # Item tokens (`model.item_tokens`): their projector trains beside the adapter but is not an
    # adapter weight, so every save writes it next to the adapter (before `trainer_state.json`: a
    # checkpoint with the state file has it) and every load of a checkpoint reads it back.
    def _save(self, output_dir=None, state_dict=None):  # noqa: ANN001
        super()._save(output_dir, state_dict)
        if item_tokens.find(self.model) is not None and self.args.should_save:
            item_tokens.save(self.model, output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):  # noqa: ANN001
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if item_tokens.find(self.model) is not None:
            item_tokens.load_into(self.model, resume_from_checkpoint)

    def _load_best_model(self):  # noqa: ANN001
        super()._load_best_model()
        if item_tokens.find(self.model) is not None and self.state.best_model_checkpoint:
            item_tokens.load_into(self.model, self.state.best_model_checkpoint)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):  # noqa: ANN001
        hr = self.hit_rate(self.model, self.accelerator) if self.hit_rate is not None else None
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if hr is not None:
            metrics[f"{metric_key_prefix}_hr@1"] = hr
            self.log({f"{metric_key_prefix}_hr@1": hr})
        return metrics


def with_prior_weight(settings: TrainSettings, records: list[dict[str, Any]]) -> TrainSettings:
    """`settings` with the first-stage prior's weight fitted on `records` when they carry a prior
    (`candidate_prior`) and none is set; records with a prior train with the softmax objective only
    (the likelihood of a title has no place for the prior)."""
    if not any(record_prior(r) is not None for r in records):
        return settings
    if settings.objective != "softmax":
        raise DataError(f"these instructions carry a first-stage prior (candidate_prior); train them with "
                        f"objective `softmax`, not {settings.objective!r}: the prior is added to the candidates' scores.")
    if settings.prior_weight is None:
        settings = replace(settings, prior_weight=fit_prior_weight(records))
        log.info("first-stage prior weight fitted on the training lists: %.4f", settings.prior_weight)
    return settings


def build_model(loaded: LoadedModel, settings: TrainSettings, item_table: np.ndarray | None = None) -> Any:
    """The trainable module: the model itself or a fresh LoRA adapter around it; with `item_table`
    (items x dim: a first stage's item embeddings) it gets collaborative soft tokens
    (`model.item_tokens`), whose projector trains with the adapter."""
    model = loaded.model
    if hasattr(model, "merge_and_unload"):  # starting from an adapter: fold it in first
        model = model.merge_and_unload()
    carried = item_tokens.detach(model)  # a tuned model's own: trained on, outside the LoRA wrapping
    if item_table is not None or carried is not None:
        if loaded.kind != "causal" or not settings.lora:
            raise DataError("item tokens train causal models with LoRA only (`lora: true`)")
        if item_table is not None and carried is not None:
            raise DataError("the base model has item tokens already (a model tuned with them): continue "
                            "training it without an item table, or start from its base model")
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if not settings.lora:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(
        task_type=TaskType.CAUSAL_LM if loaded.kind == "causal" else TaskType.SEQ_2_SEQ_LM,
        r=settings.lora_r,
        lora_alpha=settings.effective_lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_targets,
    )
    model = get_peft_model(model, cfg)
    if carried is not None:
        item_tokens.attach(model, carried)
    elif item_table is not None:
        item_tokens.install(model, item_table, settings.item_token_hidden)
    found = item_tokens.find(model)
    if found is not None:
        found.item_projector.requires_grad_(True)
    return model


def check_item_tokens(model: Any, render: dict[str, Any]) -> None:
    """Instructions with item markers train a model with item tokens, and only those."""
    has, marked = item_tokens.find(model) is not None, bool(render.get("item_tokens"))
    if has and not marked:
        raise DataError("the model has item tokens but its instructions have no item markers; build them with "
                        "`item_tokens: true` (recipe) or train without an item table")
    if marked and not has:
        raise DataError("the instructions carry item markers (built with `item_tokens`) but the model has no item "
                        "tokens; give an item table (recipe: `item_tokens: sasrec` on the model)")


def best_eval_metrics(log_history: list[dict[str, Any]], best_checkpoint: str | None) -> dict[str, float] | None:
    """The `eval_*` values logged at the best checkpoint's step (`checkpoint-N`), or None when that
    step has no logged evaluation (no best checkpoint, or an unparseable name)."""
    if not best_checkpoint:
        return None
    try:
        step = int(Path(best_checkpoint).name.rsplit("-", 1)[-1])
    except ValueError:
        return None
    found: dict[str, float] = {}
    for entry in log_history:  # the loss and HR@1 of one evaluation are logged as separate entries
        if entry.get("step") == step:
            found.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    return found or None


def train(
    model_spec: str,
    instructions: str | Path,
    settings: TrainSettings,
    kind: ModelKind | None = None,
    valid: str | Path | None = None,
    item_table: np.ndarray | None = None,
) -> TrainResult:
    """Instruction-tune `model_spec` on the `train` records in `instructions`, validating on its
    `valid` records or on every record in `valid` (e.g. a separate `--split valid` build); with
    `item_table` (a first stage's item embeddings, item index order) the model gets collaborative
    soft tokens for the item markers of instructions built with `item_tokens`."""
    records = load_instruction_records(instructions)
    train_recs = records.get("train", [])
    if not train_recs:
        raise DataError(f"{instructions} has no records with split 'train'; nothing to train on")
    if valid is not None:
        valid_recs = [r for recs in load_instruction_records(valid).values() for r in recs]
    else:
        valid_recs = records.get("valid", [])

    loaded = load_model(model_spec, kind, dtype="float32", device="cpu")
    base_type = getattr(getattr(loaded.model, "config", None), "model_type", "")
    checkpoint = resume_checkpoint(settings.out_dir, base_type, settings.lora) if settings.resume else None
    if distributed.is_main():
        mark_unfinished(settings.out_dir)  # until save_output: a killed run's folder never loads as a model
    torch.manual_seed(settings.seed)  # LoRA initialisation
    model = build_model(loaded, settings, item_table)
    budget = records_render(train_recs)
    check_item_tokens(model, budget)
    settings = with_prior_weight(settings, train_recs)

    encoder = PromptEncoder.for_model(replace(loaded, model=model), settings.prompt)
    # plain lists of features: the Trainer's length-grouped sampler reads `input_ids` lengths
    train_ds = tokenize_records(train_recs, encoder, settings.objective, settings.softmax_negatives)
    eval_ds = (tokenize_records(valid_recs[: settings.max_eval_examples], encoder, settings.objective,
                                settings.softmax_negatives) if valid_recs else None)
    if encoder.truncated:
        log.warning("%d training/validation instructions were cut to %d tokens", encoder.truncated, settings.prompt.max_prompt_tokens)
    head = records_head(train_recs)
    hr_records = reranking_records(valid_recs)
    if head == "listwise":  # validate the head being trained: letter-labelled records only
        hr_records = [r for r in hr_records if is_listwise(r)]
    hr_records = hr_records[: settings.max_eval_examples]
    metric = "hr@1" if hr_records else "loss"

    args = training_arguments(settings, eval_ds is not None, metric)
    pad_multiple = settings.gpu_pad_multiple if torch.cuda.is_available() else None
    trainer = InstructionTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,  # saved with every checkpoint: each one loads as a model
        data_collator=InstructionCollator(loaded.tokenizer.pad_token_id, loaded.kind, pad_multiple),
        callbacks=[ThroughputCallback(settings.batch_size * settings.grad_accum * max(args.world_size, 1))],
        kind=loaded.kind,
        settings=settings,
        hit_rate=CandidateHitRate(hr_records, loaded.tokenizer, loaded.kind, settings.prompt, settings.eval_normalize,
                                  settings.prior_weight or 0.0),
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if eval_ds is not None:
        # load_best_model_at_end already evaluated the model it loaded: take that evaluation from
        # the log instead of a second validation pass; evaluate only when none was logged
        logged = best_eval_metrics(trainer.state.log_history, trainer.state.best_model_checkpoint)
        metrics.update(logged if logged is not None else trainer.evaluate())
    if trainer.is_world_process_zero():
        save_output(trainer, model_spec, loaded, settings, metric, head, records_collaborative(train_recs), budget,
                    item_tokens.meta(model))
    return TrainResult(
        out_dir=str(Path(settings.out_dir)),
        global_step=trainer.state.global_step,
        best_metric=trainer.state.best_metric,
        best_checkpoint=trainer.state.best_model_checkpoint,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    )
