"""Instruction tuning with the transformers Trainer: full fine-tuning or LoRA.

What is custom (and why): `compute_loss` puts the loss on answer tokens only and, for causal
models, computes the LM head only at the positions that predict an answer token (about 1.3x
faster on this CPU; prompts are long, answers short); `evaluate` adds HR@1 over the candidates of
the validation reranking (T3) records, which picks the best checkpoint; a callback adds
examples/s to the progress bar. Everything else (DDP/FSDP/DeepSpeed via `accelerate launch`,
mixed precision, gradient accumulation, length-grouped sampling, checkpoints in safetensors,
resume, seeds) is the Trainer's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from instructrec.errors import DataError, ModelError
from instructrec.model.backend import META_FILE, LoadedModel, ModelKind, load_model
from instructrec.model.prompt import PromptEncoder, PromptSettings
from instructrec.model.scoring import CandidateScorer, Normalize, ScoringSettings, supports_masked_logits
from instructrec.training.collate import IGNORE, InstructionCollator
from instructrec.training.data import load_instruction_records, reranking_records, tokenize_records

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class TrainSettings:
    """Settings of one instruction-tuning run."""

    out_dir: str
    """Output folder: checkpoints (`checkpoint-N/`) and the final model or adapter at the top."""
    lora: bool = False
    """Train a LoRA adapter (peft) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path."""
    lora_targets: str | list[str] = "all-linear"
    """Modules to adapt: `all-linear` (every linear layer but the LM head, per architecture) or names."""
    epochs: float = 1.0
    """Passes over the training records (ignored when `max_steps` > 0)."""
    max_steps: int = -1
    """Optimizer steps to run; > 0 overrides `epochs`."""
    learning_rate: float | None = None
    """Peak learning rate; None: 2e-4 for LoRA, 5e-5 for full fine-tuning."""
    batch_size: int = 8
    """Examples per device per forward pass."""
    grad_accum: int = 1
    """Forward passes accumulated per optimizer step."""
    warmup: float = 0.03
    """Warm-up: a fraction of the steps (< 1) or a number of steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    eval_steps: int = 200
    """Evaluate (HR@1 on validation) and save a checkpoint every this many steps."""
    max_eval_examples: int = 200
    """Validation reranking records scored for HR@1 at each evaluation."""
    eval_normalize: Normalize = "mean"
    """Score normalisation for validation HR@1."""
    precision: Precision = "auto"
    """`auto`: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU."""
    seed: int = 42
    """Seed of initialisation, dropout and data order."""
    resume: bool = True
    """Continue from the last checkpoint in `out_dir` when there is one."""
    group_by_length: bool = True
    """Batch examples of similar length together (less padding)."""
    save_total_limit: int = 2
    """Checkpoints kept (the best one is always kept)."""
    logging_steps: int = 10
    """Steps between loss/throughput log lines."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30% slower)."""
    prompt: PromptSettings = field(default_factory=PromptSettings)
    """Prompt shape and length limits (the same object configures scoring)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise DataError("batch size and gradient accumulation must be >= 1")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise DataError("give a positive number of epochs or steps")


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: str
    global_step: int
    best_metric: float | None
    best_checkpoint: str | None
    metrics: dict[str, float]


class ThroughputCallback(TrainerCallback):
    """Adds examples/s since the start of this run to every log line (and the progress bar)."""

    def __init__(self, examples_per_step: int) -> None:
        self.examples_per_step = examples_per_step
        self.start: tuple[float, int] | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.start = (time.perf_counter(), state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if self.start is None or logs is None or "loss" not in logs:
            return
        elapsed = time.perf_counter() - self.start[0]
        steps = state.global_step - self.start[1]
        if elapsed > 0 and steps > 0:
            logs["examples_per_s"] = round(steps * self.examples_per_step / elapsed, 3)


def answer_only_loss(model: Any, kind: ModelKind, inputs: dict[str, torch.Tensor], num_items: Any = None) -> torch.Tensor:
    """Token-summed NLL of the answer tokens divided by `num_items` (answer tokens in the whole
    accumulated batch, as the Trainer counts them) or by this batch's answer tokens."""
    labels = inputs["labels"]
    if kind == "causal":
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][labels[:, 1:] != IGNORE]
        if supports_masked_logits(model):
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep).logits
        else:  # full head, then select
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        if logits.dim() == 3:
            logits = logits[keep]
    else:
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels).logits
        targets = labels[labels != IGNORE]
        logits = logits[labels != IGNORE]
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    denom = num_items if num_items is not None else targets.numel()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / denom


class InstructionTrainer(Trainer):
    """Trainer with the answer-only loss and HR@1 over validation candidates."""

    def __init__(self, *args: Any, kind: ModelKind, tokenizer: Any, hr_records: list[dict[str, Any]],
                 prompt: PromptSettings, eval_normalize: Normalize, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.tok = tokenizer
        self.hr_records = hr_records
        self.prompt_settings = prompt
        self.eval_normalize = eval_normalize
        # the loss is divided by the accumulated answer-token count, as HF models do themselves
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        num_items = num_items_in_batch if model.training else None
        loss = answer_only_loss(model, self.kind, inputs, num_items)
        if num_items is not None and self.args.average_tokens_across_devices:
            # num_items counts answer tokens on every process and DDP averages gradients: scale
            # back up by the process count, as Trainer.compute_loss does for built-in losses
            loss = loss * self.accelerator.num_processes
        return (loss, {}) if return_outputs else loss

    def hit_rate_at_1(self) -> float | None:
        """HR@1 on the validation reranking records, sharded over processes and gathered."""
        if not self.hr_records:
            return None
        acc = self.accelerator
        n = math.ceil(len(self.hr_records) / acc.num_processes)
        shard = self.hr_records[acc.process_index * n : (acc.process_index + 1) * n]
        weights = [1.0] * len(shard) + [0.0] * (n - len(shard))
        shard = shard + [self.hr_records[0]] * (n - len(shard))  # equal work on every process
        model = acc.unwrap_model(self.model)
        scorer = CandidateScorer(LoadedModel(model, self.tok, self.kind, "training"), ScoringSettings(normalize=self.eval_normalize), self.prompt_settings)
        scores = scorer.score([r["instruction"] for r in shard], [r["candidates"] for r in shard])
        hits = sum(w * float(int(np.argmax(s)) == int(r["target_index"])) for w, s, r in zip(weights, scores, shard))
        totals = acc.reduce(torch.tensor([hits, sum(weights)], device=acc.device), reduction="sum")
        return float(totals[0] / totals[1])

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):  # noqa: ANN001
        hr = self.hit_rate_at_1()
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if hr is not None:
            metrics[f"{metric_key_prefix}_hr@1"] = hr
            self.log({f"{metric_key_prefix}_hr@1": hr})
        return metrics


def _precision_flags(precision: Precision) -> dict[str, bool]:
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision != "fp32" and not cuda:
        raise ModelError(f"{precision} training needs a GPU here; use --precision fp32 (or auto) on CPU")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _sampling_args(group_by_length: bool) -> dict[str, Any]:
    """`train_sampling_strategy` in recent transformers, `group_by_length` in older ones."""
    fields = TrainingArguments.__dataclass_fields__
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def _warmup_args(warmup: float) -> dict[str, Any]:
    """A fraction (< 1) or a step count; older transformers take fractions as `warmup_ratio`."""
    if warmup < 1 and "warmup_ratio" in TrainingArguments.__dataclass_fields__:
        return {"warmup_ratio": warmup}
    return {"warmup_steps": warmup if warmup < 1 else int(warmup)}


def _check_resume(checkpoint: str, kind_type: str, lora: bool) -> None:
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
    if not is_adapter and found and found != kind_type:
        raise ModelError(
            f"{ckpt} holds a {found} checkpoint but the model is {kind_type}; use another --out or pass --no-resume"
        )


def build_model(loaded: LoadedModel, settings: TrainSettings) -> Any:
    """The trainable module: the model itself or a fresh LoRA adapter around it."""
    model = loaded.model
    if hasattr(model, "merge_and_unload"):  # starting from an adapter: fold it in first
        model = model.merge_and_unload()
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if not settings.lora:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(
        task_type=TaskType.CAUSAL_LM if loaded.kind == "causal" else TaskType.SEQ_2_SEQ_LM,
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.lora_targets,
    )
    return get_peft_model(model, cfg)


def train(
    model_spec: str,
    instructions: str | Path,
    settings: TrainSettings,
    kind: ModelKind | None = None,
    valid: str | Path | None = None,
) -> TrainResult:
    """Instruction-tune `model_spec` on the `train` records in `instructions`, validating on its
    `valid` records or on every record in `valid` (e.g. a separate `--split valid` build)."""
    records = load_instruction_records(instructions)
    train_recs = records.get("train", [])
    if not train_recs:
        raise DataError(f"{instructions} has no records with split 'train'; nothing to train on")
    if valid is not None:
        valid_recs = [r for recs in load_instruction_records(valid).values() for r in recs]
    else:
        valid_recs = records.get("valid", [])
    out = Path(settings.out_dir)
    checkpoint = get_last_checkpoint(str(out)) if settings.resume and out.is_dir() else None

    loaded = load_model(model_spec, kind, dtype="float32", device="cpu")
    base_type = getattr(getattr(loaded.model, "config", None), "model_type", "")
    if checkpoint:
        _check_resume(checkpoint, base_type, settings.lora)
        log.info("resuming from %s", checkpoint)
    torch.manual_seed(settings.seed)  # LoRA initialisation
    model = build_model(loaded, settings)

    encoder = PromptEncoder(loaded.tokenizer, loaded.kind, settings.prompt)
    # plain lists of features: the Trainer's length-grouped sampler reads `input_ids` lengths
    train_ds = tokenize_records(train_recs, encoder)
    eval_ds = tokenize_records(valid_recs[: settings.max_eval_examples], encoder) if valid_recs else None
    if encoder.truncated:
        log.warning("%d training/validation instructions were cut to %d tokens", encoder.truncated, settings.prompt.max_prompt_tokens)
    hr_records = reranking_records(valid_recs)[: settings.max_eval_examples]
    metric = "hr@1" if hr_records else "loss"

    lr = settings.learning_rate or (2e-4 if settings.lora else 5e-5)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=lr,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        **_warmup_args(settings.warmup),
        lr_scheduler_type="linear",
        logging_steps=settings.logging_steps,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=settings.eval_steps,
        save_strategy="steps",
        save_steps=settings.eval_steps,
        save_total_limit=settings.save_total_limit,
        load_best_model_at_end=eval_ds is not None,
        metric_for_best_model=metric if eval_ds is not None else None,
        greater_is_better=metric == "hr@1" if eval_ds is not None else None,
        prediction_loss_only=True,
        **_sampling_args(settings.group_by_length),
        remove_unused_columns=False,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        dataloader_pin_memory=torch.cuda.is_available(),
        **_precision_flags(settings.precision),
    )
    world = max(args.world_size, 1)
    trainer = InstructionTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,  # saved with every checkpoint: each one loads as a model
        data_collator=InstructionCollator(loaded.tokenizer.pad_token_id, loaded.kind, 8 if torch.cuda.is_available() else None),
        callbacks=[ThroughputCallback(settings.batch_size * settings.grad_accum * world)],
        kind=loaded.kind,
        tokenizer=loaded.tokenizer,
        hr_records=hr_records,
        prompt=settings.prompt,
        eval_normalize=settings.eval_normalize,
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if eval_ds is not None:
        metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        trainer.save_model(str(out))
        loaded.tokenizer.save_pretrained(str(out))
        base = model_spec if not Path(model_spec).expanduser().exists() else str(Path(model_spec).expanduser().resolve())
        meta = {
            "base_model": base,
            "kind": loaded.kind,
            "lora": settings.lora,
            "global_step": trainer.state.global_step,
            "best_metric": trainer.state.best_metric,
            "metric": metric,
            "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
            "settings": {k: v for k, v in asdict(settings).items() if k != "prompt"},
            "prompt": asdict(settings.prompt),
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return TrainResult(
        out_dir=str(out),
        global_step=trainer.state.global_step,
        best_metric=trainer.state.best_metric,
        best_checkpoint=trainer.state.best_model_checkpoint,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    )
