"""`instructrec train` and `instructrec score`: instruction-tune an LLM, rerank candidates with it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from instructrec.cli.common import console, stats_table
from instructrec.errors import DataError
from instructrec.model.backend import META_FILE, ModelKind
from instructrec.model.options import DEFAULT_NORMALIZE, Normalize
from instructrec.model.prompt import PromptSettings
from instructrec.settings_docs import default, doc
from instructrec.training.settings import TrainSettings

MODEL_HELP = "'default' (bundled SmolLM2-135M-Instruct), a model folder, a training output, a .gguf file or a hub id."


def _prompt_settings(model: str, max_prompt_tokens: int | None) -> PromptSettings:
    """Score with the prompt settings the model was trained with, when it says so."""
    meta = Path(model).expanduser() / META_FILE
    saved = json.loads(meta.read_text()).get("prompt", {}) if meta.is_file() else {}
    settings = PromptSettings(**saved)
    if max_prompt_tokens is not None:
        settings.max_prompt_tokens = max_prompt_tokens
    return settings


def _option(cls: type, name: str, *param_decls: str, extra: str = "", **kwargs: Any) -> Any:
    """A typer option whose help text is the docstring of field `cls.name` (its default is the
    field's too: `= default(cls, name)`)."""
    return typer.Option(*param_decls, help=doc(cls, name, extra), **kwargs)


T, P = TrainSettings, PromptSettings


def train_cmd(
    model: Annotated[str, typer.Option(help=f"Model to tune: {MODEL_HELP}")] = "default",
    instructions: Annotated[Path, typer.Option(help="Instruction data: a folder or file of JSONL/Parquet records.")] = ...,
    out: Annotated[Path, _option(T, "out_dir", "--out")] = ...,
    valid: Annotated[Path | None, typer.Option(
        help="Validation instructions (all records used); default: the 'valid' records of --instructions.")] = None,
    lora: Annotated[bool, _option(T, "lora", "--lora/--full")] = default(T, "lora"),
    lora_r: Annotated[int, _option(T, "lora_r")] = default(T, "lora_r"),
    lora_alpha: Annotated[int | None, _option(T, "lora_alpha")] = default(T, "lora_alpha"),
    lora_dropout: Annotated[float, _option(T, "lora_dropout")] = default(T, "lora_dropout"),
    lora_targets: Annotated[str, _option(T, "lora_targets", extra="Names: comma-separated, e.g. q_proj,v_proj.")]
        = default(T, "lora_targets"),
    steps: Annotated[int, _option(T, "max_steps", "--steps")] = default(T, "max_steps"),
    epochs: Annotated[float, _option(T, "epochs")] = default(T, "epochs"),
    lr: Annotated[float | None, _option(T, "learning_rate", "--lr")] = default(T, "learning_rate"),
    lora_learning_rate: Annotated[float, _option(T, "lora_learning_rate")] = default(T, "lora_learning_rate"),
    full_learning_rate: Annotated[float, _option(T, "full_learning_rate")] = default(T, "full_learning_rate"),
    lr_scheduler: Annotated[str, _option(T, "lr_scheduler")] = default(T, "lr_scheduler"),
    warmup: Annotated[float, _option(T, "warmup")] = default(T, "warmup"),
    weight_decay: Annotated[float, _option(T, "weight_decay")] = default(T, "weight_decay"),
    batch_size: Annotated[int, _option(T, "batch_size")] = default(T, "batch_size"),
    eval_batch_size: Annotated[int | None, _option(T, "eval_batch_size")] = default(T, "eval_batch_size"),
    grad_accum: Annotated[int, _option(T, "grad_accum")] = default(T, "grad_accum"),
    eval_steps: Annotated[int, _option(T, "eval_steps")] = default(T, "eval_steps"),
    max_eval_examples: Annotated[int, _option(T, "max_eval_examples")] = default(T, "max_eval_examples"),
    eval_normalize: Annotated[str, _option(T, "eval_normalize")] = default(T, "eval_normalize"),
    objective: Annotated[str, _option(T, "objective")] = default(T, "objective"),
    softmax_temperature: Annotated[float, _option(T, "softmax_temperature")] = default(T, "softmax_temperature"),
    softmax_negatives: Annotated[int | None, _option(T, "softmax_negatives")] = default(T, "softmax_negatives"),
    prior_weight: Annotated[float | None, _option(T, "prior_weight")] = default(T, "prior_weight"),
    precision: Annotated[str, _option(T, "precision")] = default(T, "precision"),
    gpu_pad_multiple: Annotated[int | None, _option(T, "gpu_pad_multiple")] = default(T, "gpu_pad_multiple"),
    group_by_length: Annotated[bool, _option(T, "group_by_length")] = default(T, "group_by_length"),
    gradient_checkpointing: Annotated[bool, _option(T, "gradient_checkpointing")] = default(T, "gradient_checkpointing"),
    save_total_limit: Annotated[int, _option(T, "save_total_limit")] = default(T, "save_total_limit"),
    logging_steps: Annotated[int, _option(T, "logging_steps")] = default(T, "logging_steps"),
    seed: Annotated[int, _option(T, "seed")] = default(T, "seed"),
    resume: Annotated[bool, _option(T, "resume", "--resume/--no-resume")] = default(T, "resume"),
    item_tokens: Annotated[Path | None, typer.Option(
        help="A saved sequential retriever (sasrec, gru4rec; e.g. runs/models/DATA/sasrec from `instructrec retrieve fit`) whose item embeddings "
             "become collaborative soft tokens (one per item marker of instructions built with --item-tokens); "
             "LoRA, causal models.")] = None,
    item_token_hidden: Annotated[int, _option(T, "item_token_hidden")] = default(T, "item_token_hidden"),
    max_prompt_tokens: Annotated[int, _option(P, "max_prompt_tokens")] = default(P, "max_prompt_tokens"),
    max_answer_tokens: Annotated[int, _option(P, "max_answer_tokens")] = default(P, "max_answer_tokens"),
    keep_head_tokens: Annotated[int, _option(P, "keep_head_tokens")] = default(P, "keep_head_tokens"),
    chat_template: Annotated[bool | None, _option(P, "use_chat_template", "--chat-template/--no-chat-template")]
        = default(P, "use_chat_template"),
    kind: Annotated[ModelKind | None, typer.Option(help="Force the backend: seq2seq or causal.")] = None,
) -> None:
    """Instruction-tune a model (full or LoRA); runs unchanged under `accelerate launch`."""
    from instructrec.training import train

    targets = [t.strip() for t in lora_targets.split(",") if t.strip()]
    prompt = PromptSettings(max_prompt_tokens=max_prompt_tokens, max_answer_tokens=max_answer_tokens,
                            keep_head_tokens=keep_head_tokens, use_chat_template=chat_template)
    settings = TrainSettings(
        out_dir=str(out), lora=lora, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        lora_targets=lora_targets if lora_targets == default(T, "lora_targets") else targets,
        max_steps=steps, epochs=epochs, learning_rate=lr, lora_learning_rate=lora_learning_rate,
        full_learning_rate=full_learning_rate, lr_scheduler=lr_scheduler, warmup=warmup, weight_decay=weight_decay,
        batch_size=batch_size, eval_batch_size=eval_batch_size, grad_accum=grad_accum, eval_steps=eval_steps,
        max_eval_examples=max_eval_examples, eval_normalize=eval_normalize,  # type: ignore[arg-type]
        objective=objective, softmax_temperature=softmax_temperature,  # type: ignore[arg-type]
        softmax_negatives=softmax_negatives, prior_weight=prior_weight,
        precision=precision, gpu_pad_multiple=gpu_pad_multiple,  # type: ignore[arg-type]
        group_by_length=group_by_length, gradient_checkpointing=gradient_checkpointing,
        save_total_limit=save_total_limit, logging_steps=logging_steps, seed=seed, resume=resume, prompt=prompt,
        item_token_hidden=item_token_hidden,
    )
    table = None
    if item_tokens is not None:
        from instructrec.candidates.base import load_retriever
        from instructrec.model.item_tokens import item_table

        table = item_table(load_retriever(item_tokens), str(item_tokens))
    start = time.perf_counter()
    result = train(model, instructions, settings, kind=kind, valid=valid, item_table=table)
    summary: dict[str, object] = {"output": result.out_dir, "steps": result.global_step,
                                  "best checkpoint": result.best_checkpoint or "-"}
    summary.update({k: v for k, v in result.metrics.items() if k.startswith(("eval_", "train_loss"))})
    summary["minutes"] = round((time.perf_counter() - start) / 60, 2)
    console.print(stats_table("training", summary))


def _read_candidates(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"candidates file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc.msg}); give a JSON list of titles") from None
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise DataError(f"{path} must hold a JSON list of title strings")
        return items
    return [line.strip() for line in text.splitlines() if line.strip()]


def score_cmd(
    candidates: Annotated[list[str] | None, typer.Argument(help="Candidate titles (after --candidates).", show_default=False)] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "default",
    instruction: Annotated[str | None, typer.Option(help="The instruction text.")] = None,
    instruction_file: Annotated[Path | None, typer.Option(help="Read the instruction from this file.")] = None,
    candidates_flag: Annotated[bool, typer.Option("--candidates", help="Marks the start of the candidate titles: --candidates A B C.")] = False,
    candidates_file: Annotated[Path | None, typer.Option(help="Candidate titles, one per line (or a .json list).")] = None,
    normalize: Annotated[str, typer.Option(help="mean (length-normalised) or sum log-likelihood.")] = DEFAULT_NORMALIZE,
    max_prompt_tokens: Annotated[int | None, typer.Option(help="Instruction length limit (default: as trained, else 512).")] = None,
    kind: Annotated[ModelKind | None, typer.Option(help="Force the backend: seq2seq or causal.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda when available).")] = None,
) -> None:
    """Rank candidate titles by their likelihood given an instruction."""
    from instructrec.model import load_model
    from instructrec.model.scoring import CandidateScorer, ScoringSettings

    if (instruction is None) == (instruction_file is None):
        raise DataError("give exactly one of --instruction TEXT or --instruction-file FILE")
    text = instruction if instruction is not None else instruction_file.read_text(encoding="utf-8").strip()  # type: ignore[union-attr]
    titles = list(candidates or []) + (_read_candidates(candidates_file) if candidates_file else [])
    if not titles:
        raise DataError("no candidates: pass --candidates \"title 1\" \"title 2\" ... or --candidates-file FILE")
    if normalize not in ("mean", "sum"):
        raise DataError(f"--normalize must be mean or sum, not {normalize!r}")
    norm: Normalize = normalize  # type: ignore[assignment]
    loaded = load_model(model, kind, device=device)
    scorer = CandidateScorer(loaded, ScoringSettings(normalize=norm), _prompt_settings(model, max_prompt_tokens))
    start = time.perf_counter()
    ranked = scorer.rank(text, titles)
    table = Table(title=f"{len(titles)} candidates, {norm} log-likelihood ({time.perf_counter() - start:.2f} s)")
    table.add_column("rank", justify="right")
    table.add_column("candidate")
    table.add_column("score", justify="right")
    for i, (title, score) in enumerate(ranked, 1):
        table.add_row(str(i), title, f"{score:.4f}")
    console.print(table)
    if scorer.truncated:
        console.print(f"[yellow]the instruction was cut to {scorer.encoder.settings.max_prompt_tokens} tokens (history removed)[/]")
