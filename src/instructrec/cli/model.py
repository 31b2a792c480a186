"""`instructrec train` and `instructrec score`: instruction-tune an LLM, rerank candidates with it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instructrec.cli.common import console, stats_table
from instructrec.errors import DataError
from instructrec.model.backend import META_FILE, ModelKind
from instructrec.model.prompt import PromptSettings
from instructrec.model.scoring import DEFAULT_NORMALIZE, Normalize

MODEL_HELP = "'default' (bundled SmolLM2-135M-Instruct), a model folder, a training output, a .gguf file or a hub id."


def _prompt_settings(model: str, max_prompt_tokens: int | None) -> PromptSettings:
    """Score with the prompt settings the model was trained with, when it says so."""
    meta = Path(model).expanduser() / META_FILE
    saved = json.loads(meta.read_text()).get("prompt", {}) if meta.is_file() else {}
    settings = PromptSettings(**saved)
    if max_prompt_tokens is not None:
        settings.max_prompt_tokens = max_prompt_tokens
    return settings


def train_cmd(
    model: Annotated[str, typer.Option(help=f"Model to tune: {MODEL_HELP}")] = "default",
    instructions: Annotated[Path, typer.Option(help="Instruction data: a folder or file of JSONL/Parquet records.")] = ...,
    out: Annotated[Path, typer.Option(help="Output folder (checkpoints, final model or adapter).")] = ...,
    valid: Annotated[Path | None, typer.Option(
        help="Validation instructions (all records used); default: the 'valid' records of --instructions.")] = None,
    lora: Annotated[bool, typer.Option("--lora/--full", help="Train a LoRA adapter, or all weights.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    steps: Annotated[int, typer.Option(help="Optimizer steps (> 0 overrides --epochs).")] = -1,
    epochs: Annotated[float, typer.Option(help="Passes over the training records.")] = 1.0,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 2e-4 LoRA, 5e-5 full).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per device per forward pass.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Forward passes per optimizer step.")] = 1,
    eval_steps: Annotated[int, typer.Option(help="Evaluate (validation HR@1) and checkpoint every N steps.")] = 200,
    max_eval_examples: Annotated[int, typer.Option(help="Validation reranking records scored per evaluation.")] = 200,
    precision: Annotated[str, typer.Option(help="auto | fp32 | bf16 | fp16 (auto: bf16/fp16 on GPU, fp32 on CPU).")] = "auto",
    max_prompt_tokens: Annotated[int, typer.Option(help="Instruction length limit; longer ones lose history.")] = 512,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the last checkpoint in --out.")] = True,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = False,
    kind: Annotated[ModelKind | None, typer.Option(help="Force the backend: seq2seq or causal.")] = None,
) -> None:
    """Instruction-tune a model (full or LoRA); runs unchanged under `accelerate launch`."""
    from instructrec.training import TrainSettings, train

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise DataError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    settings = TrainSettings(
        out_dir=str(out), lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r, max_steps=steps, epochs=epochs,
        learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum, eval_steps=eval_steps,
        max_eval_examples=max_eval_examples, precision=precision, seed=seed, resume=resume,  # type: ignore[arg-type]
        gradient_checkpointing=gradient_checkpointing, prompt=PromptSettings(max_prompt_tokens=max_prompt_tokens),
    )
    start = time.perf_counter()
    result = train(model, instructions, settings, kind=kind, valid=valid)
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
