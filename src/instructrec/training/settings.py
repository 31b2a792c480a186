"""What one instruction-tuning run is asked to do (`TrainSettings`) and what it produced (`TrainResult`).

Every policy of a run is a field here, documented right below it; `instructrec train` takes its
options' help texts and defaults from these docstrings and defaults (`instructrec.settings_docs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from instructrec.errors import DataError
from instructrec.model.options import Normalize
from instructrec.model.prompt import PromptSettings

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
Objective = Literal["likelihood", "softmax", "likelihood+softmax"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalize)


@dataclass
class TrainSettings:
    """Settings of one instruction-tuning run."""

    out_dir: str
    """Output folder: checkpoints (`checkpoint-N/`) and the final model or adapter at the top."""
    lora: bool = False
    """Train a LoRA adapter (peft) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int | None = None
    """LoRA scaling numerator (scale = alpha / rank); unset: twice the rank."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path."""
    lora_targets: str | list[str] = "all-linear"
    """Modules to adapt: `all-linear` (every linear layer but the LM head, per architecture) or names."""
    epochs: float = 1.0
    """Passes over the training records (ignored when a positive step count is set)."""
    max_steps: int = -1
    """Optimizer steps to run; > 0 overrides the epochs."""
    learning_rate: float | None = None
    """Peak learning rate; unset: the LoRA learning rate for LoRA runs, the full one for full fine-tuning."""
    lora_learning_rate: float = 2e-4
    """Peak learning rate of LoRA runs when no learning rate is set."""
    full_learning_rate: float = 5e-5
    """Peak learning rate of full fine-tuning when no learning rate is set."""
    lr_scheduler: str = "linear"
    """Learning-rate schedule after warm-up (a transformers `lr_scheduler_type`: linear, cosine, constant, ...)."""
    batch_size: int = 8
    """Examples per device per forward pass."""
    eval_batch_size: int | None = None
    """Examples per device per forward pass of the validation loss; unset: the training batch size."""
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
    """Score normalisation for validation HR@1 and the `softmax` objective: mean (length-normalised)
    or sum log-likelihood (score as you will rerank)."""
    objective: Objective = "likelihood"
    """What reranking (T3) records with numbered candidates train: `likelihood`, the paper's
    negative log-likelihood of the target title; `softmax`, cross-entropy of the target over the
    softmax of every candidate's title log-likelihood (normalised by `eval_normalize`, divided by
    `softmax_temperature`), the score the title head reranks with, so the model learns to tell the
    target from the other candidates and not only to write titles (S-DPO's multi-negative softmax,
    arXiv 2406.09215, without its reference model); `likelihood+softmax`: their sum. Other records
    (T0-T2, letter-labelled lists) train as they always do. Causal models only."""
    softmax_temperature: float = 1.0
    """Temperature of the `softmax` objective (below 1 sharpens: mean log-likelihoods of titles differ
    by fractions of a nat)."""
    softmax_negatives: int | None = None
    """Negatives per list in the `softmax` objective: the target and this many of the list's other
    candidates drawn at random (seeded by the instruction, `training.data.sampled_negatives`), a
    sampled softmax; unset: all of them. Each
    candidate's title is a forward and backward pass of its tokens: on a CPU the candidates of a
    10-item Games list cost more than its prompt."""
    prior_weight: float | None = None
    """For records built with a first-stage prior (`candidate_prior`, `meta.prior`: each candidate's
    z-scored first-stage score): the softmax objective and validation rank by the title score plus
    this weight times the prior, so the model learns a residual over the first stage and serves
    with it (reranker role `prior`). Unset: fitted on the training lists before training (the
    weight under which the prior alone best predicts the targets). Ignored for other records."""
    precision: Precision = "auto"
    """auto, fp32, bf16 or fp16; auto: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU."""
    gpu_pad_multiple: int | None = 8
    """On a GPU, padded batch lengths are rounded up to a multiple of this (tensor cores); 0 or unset:
    no rounding. CPU runs always pad to the longest row of the batch."""
    seed: int = 42
    """Seed of initialisation, dropout and data order."""
    resume: bool = True
    """Continue from the last checkpoint in the output folder when there is one."""
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
    item_token_hidden: int = 256
    """Hidden width of the item-token projector (`model.item_tokens`; used when `train` gets an item table)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or (self.eval_batch_size is not None and self.eval_batch_size < 1):
            raise DataError("batch sizes and gradient accumulation must be >= 1")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise DataError("give a positive number of epochs or steps")
        if self.precision not in PRECISIONS:
            raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.objective not in OBJECTIVES:
            raise DataError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.softmax_negatives is not None and self.softmax_negatives < 1:
            raise DataError(f"softmax_negatives must be >= 1 (or unset: all), not {self.softmax_negatives}")
        if self.softmax_temperature <= 0:
            raise DataError(f"softmax_temperature must be > 0, not {self.softmax_temperature}")
        if self.prior_weight is not None and self.prior_weight < 0:
            raise DataError(f"prior_weight must be >= 0 (or unset: fitted), not {self.prior_weight}")
        if self.item_token_hidden < 1:
            raise DataError(f"item_token_hidden must be >= 1, not {self.item_token_hidden}")
        if self.eval_normalize not in NORMALIZATIONS:
            raise DataError(f"eval_normalize must be one of {', '.join(NORMALIZATIONS)}, not {self.eval_normalize!r}")

    @property
    def effective_learning_rate(self) -> float:
        """`learning_rate`, else the default of the training mode."""
        if self.learning_rate is not None:
            return self.learning_rate
        return self.lora_learning_rate if self.lora else self.full_learning_rate

    @property
    def effective_lora_alpha(self) -> int:
        """`lora_alpha`, else twice the rank."""
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_r


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: str
    """The output folder."""
    global_step: int
    """Optimizer steps done, counting those of resumed runs."""
    best_metric: float | None
    """The best validation metric (HR@1, else loss); None without validation records."""
    best_checkpoint: str | None
    """The checkpoint the best metric came from (the model saved at the top of `out_dir`)."""
    metrics: dict[str, float]
    """Final training and validation metrics (`train_loss`, `eval_hr@1`, ...)."""
