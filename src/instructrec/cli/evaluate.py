"""`instructrec evaluate` and `instructrec retrieve ...`: the evaluation protocol and the retrievers."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instructrec.candidates.base import load_retriever
from instructrec.cli.common import console
from instructrec.data.dataset import Dataset
from instructrec.data.split import leave_one_out
from instructrec.eval.candidate_sets import CandidateSet
from instructrec.eval.metrics import Ties
from instructrec.eval.protocol import EvalResult
from instructrec.eval.report import write_report
from instructrec.eval.runner import RetrieverStore, RunSettings, parse_params, run_evaluation

retrieve_app = typer.Typer(help="Fit first-stage retrievers / classical baselines and query them.",
                           no_args_is_help=True)

MODELS_HELP = "Folder of fitted retrievers (one sub-folder per method); default runs/models/<data folder name>."
PARAM_HELP = "Retriever setting as METHOD.KEY=VALUE (repeatable), e.g. sasrec.epochs=5 or bpr.factors=128."


def _models_dir(data: Path, models: Path | None) -> Path:
    return models if models is not None else Path("runs") / "models" / data.resolve().name


def evaluate_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (from `instructrec data prepare`).")],
    method: Annotated[str, typer.Option(
        help="Comma-separated methods: popularity, bpr, sasrec, gru4rec, bert4rec, bm25, embedding, or a "
             "registered scorer.")] = "sasrec",
    task: Annotated[str, typer.Option(
        help="seqrec <P1,I0,T3> | search <P0,I2,T3> | psearch-i1 <P1,I1,T3> | psearch-i2 <P1,I2,T3> | "
             "psearch-p2 <P1,P2,T3>.")] = "seqrec",
    candidates: Annotated[str, typer.Option(
        help="random:N | hard:RETRIEVER:N | groups:C[:RETRIEVER] | file:PATH (Games-6k.<retriever> "
             "format, or a saved .npz set).")] = "random:9",
    users: Annotated[int | None, typer.Option(help="Evaluate a seeded sample of this many users (default all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the user sample, negatives, positions and ties.")] = 0,
    ties: Annotated[str, typer.Option(help="Tie-breaking: random (seeded) | pessimistic | optimistic.")] = "random",
    full_ranking: Annotated[bool, typer.Option(
        "--full-ranking", help="Also rank the true item among all items (retrievers only).")] = False,
    queries: Annotated[Path | None, typer.Option(
        help="JSONL with user_id and query per line (I1/P2 texts; overrides the I2 title keywords).")] = None,
    models: Annotated[Path | None, typer.Option(help=MODELS_HELP)] = None,
    param: Annotated[list[str] | None, typer.Option(help=PARAM_HELP)] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Fit retrievers again even if saved ones exist.")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Report folder (results.json/.md/.png, per_user.parquet); default runs/eval/<data>-<task>-<candidates>.")] = None,
    save_candidates: Annotated[Path | None, typer.Option(
        help="Also save the candidate set (.npz) so other methods can be evaluated on the same one.")] = None,
    batch_size: Annotated[int, typer.Option(help="Users scored per call.")] = 2048,
) -> None:
    """Evaluate methods on the paper's protocol (leave-one-out; HR@1/3/5, NDCG@3/5, MRR with 95% CIs)."""
    if ties not in ("random", "pessimistic", "optimistic"):
        raise typer.BadParameter("--ties must be random, pessimistic or optimistic")
    started = time.monotonic()
    dataset = Dataset.load(data)
    split = leave_one_out(dataset)
    methods = [m.strip() for m in method.split(",") if m.strip()]
    params = parse_params(param or [])
    store = RetrieverStore(dataset, split, _models_dir(data, models), params, refit)
    settings = RunSettings(methods, task, candidates, users, seed, ties, full_ranking,  # type: ignore[arg-type]
                           str(queries) if queries else None, batch_size)
    results, cands = run_evaluation(dataset, split, settings, store)
    if save_candidates is not None:
        path = cands.save(save_candidates)
        console.print(f"saved the candidate set to {path}")
    out = out or Path("runs") / "eval" / _slug(f"{data.resolve().name}-{task}-{candidates}")
    record = {**vars(settings), "data": str(data), "dataset": dataset.manifest.source,
              "dataset_counts": dataset.counts(), "models": str(store.root), "params": params,
              "candidate_set": {"spec": cands.spec, "seed": cands.seed, "stage": cands.stage, "size": cands.size,
                                "users": len(cands), **cands.info},
              "seconds": round(time.monotonic() - started, 1)}
    paths = write_report(results, out, record, title=f"{data.name}: {task}, candidates {candidates}")
    console.print(_table(results))
    console.print(f"report: {paths['json']}, {paths['markdown']}, {paths['chart']}")


@retrieve_app.command("fit")
def fit_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    method: Annotated[str, typer.Option(help="Comma-separated retriever names.")] = "sasrec",
    models: Annotated[Path | None, typer.Option(help=MODELS_HELP)] = None,
    param: Annotated[list[str] | None, typer.Option(help=PARAM_HELP)] = None,
) -> None:
    """Fit retrievers on the training split (early stopping on validation) and save them."""
    dataset = Dataset.load(data)
    split = leave_one_out(dataset)
    store = RetrieverStore(dataset, split, _models_dir(data, models), parse_params(param or []), refit=True)
    for name in [m.strip() for m in method.split(",") if m.strip()]:
        started = time.monotonic()
        model = store(name)
        best = getattr(model, "best_epoch_", None)
        console.print(f"{name}: fitted in {time.monotonic() - started:.0f} s"
                      + (f" (best epoch {best})" if best else "") + f", saved to {store.root / name}")


@retrieve_app.command("recommend")
def recommend_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    method: Annotated[str, typer.Option(help="Retriever name (loaded from --models).")] = "sasrec",
    user: Annotated[str | None, typer.Option(help="User id: recommend from their whole history.")] = None,
    query: Annotated[str | None, typer.Option(help="Text query (bm25, embedding).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    models: Annotated[Path | None, typer.Option(help=MODELS_HELP)] = None,
) -> None:
    """Top-k items for a user's history or a text query, from a fitted retriever."""
    dataset = Dataset.load(data)
    model = load_retriever(_models_dir(data, models) / method)
    if user is None and query is None:
        raise typer.BadParameter("give --user or --query")
    history = dataset.sequences[dataset.user_index(user)] if user is not None else None
    if query is not None:
        ranked = model.search(query, k, history=history, exclude_seen=history is not None)
    else:
        ranked = model.recommend(history, k, user=dataset.user_index(user))
    table = Table(title=f"{method}: top {k}")
    for col in ("rank", "item_id", "title", "score"):
        table.add_column(col)
    for i, (item, score) in enumerate(zip(ranked.items, ranked.scores), 1):
        table.add_row(str(i), str(dataset.item_ids[item]), dataset.title(item), f"{score:.4f}")
    console.print(table)


def _table(results: list[EvalResult]) -> Table:
    table = Table(title="evaluation (mean, 95% CI half-width)")
    metrics: list[str] = []
    for r in results:
        metrics += [m for m in r.per_user if m not in metrics]
    for col in ("method", "candidates", "users", *metrics, "seconds"):
        table.add_column(col, justify="right" if col not in ("method", "candidates") else "left")
    for r in results:
        s = r.summary
        table.add_row(r.method, r.candidates, f"{len(r.rows):,}",
                      *[f"{s[m]['mean']:.4f}±{s[m]['ci_high'] - s[m]['mean']:.4f}" if m in s else "" for m in metrics],
                      f"{r.seconds:.1f}")
    return table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


__all__ = ["CandidateSet", "Ties", "evaluate_cmd", "retrieve_app"]
