"""`instructrec evaluate` and `instructrec retrieve ...`: the evaluation protocol and the retrievers."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instructrec import distributed
from instructrec.candidates.base import load_retriever
from instructrec.cli.common import console
from instructrec.data.dataset import Dataset
from instructrec.data.split import leave_one_out
from instructrec.eval.candidate_sets import CandidateSet
from instructrec.eval.metrics import Ties
from instructrec.eval.protocol import EvalResult
from instructrec.eval.report import write_report
from instructrec.eval.runner import (
    RetrieverStore,
    RunSettings,
    make_context,
    paired_differences,
    paired_markdown,
    parse_params,
    run_evaluation,
)
from instructrec.settings_docs import default, doc

retrieve_app = typer.Typer(help="Fit first-stage retrievers / classical baselines and query them.",
                           no_args_is_help=True)

MODELS_HELP = "Folder of fitted retrievers (one sub-folder per method); default runs/models/<data folder name>."
PARAM_HELP = "Retriever setting as METHOD.KEY=VALUE (repeatable), e.g. sasrec.epochs=5 or bpr.factors=128."


def _models_dir(data: Path, models: Path | None) -> Path:
    return models if models is not None else Path("runs") / "models" / data.resolve().name


R = RunSettings


def evaluate_cmd(
    data: Annotated[Path | None, typer.Option(
        help="Dataset folder (from `instructrec data prepare`); default: the --recommender's own data.")] = None,
    method: Annotated[str, typer.Option(
        help="Comma-separated methods: retrievers (popularity, bpr, sasrec, gru4rec, bert4rec, bm25, embedding, dense, hybrid), "
             "llm[:MODEL] (the LLM reranker), llm[:MODEL]+RETRIEVER[@history|@text] (fused; weight fitted on "
             "--valid-users), stack:llm[:MODEL]+RETRIEVER... or stack:RETRIEVER+RETRIEVER... (a learned stacker: one "
             "weight per signal, fitted on --valid-users), recommender (a saved --recommender as a whole).")] = "sasrec",
    task: Annotated[str, typer.Option(help=doc(R, "task"))] = default(R, "task"),
    candidates: Annotated[str, typer.Option(help=doc(R, "candidates"))] = default(R, "candidates"),
    users: Annotated[int | None, typer.Option(help=doc(R, "users"))] = default(R, "users"),
    valid_users: Annotated[int, typer.Option(help=doc(R, "valid_users"))] = default(R, "valid_users"),
    seed: Annotated[int, typer.Option(help=doc(R, "seed"))] = default(R, "seed"),
    ties: Annotated[str, typer.Option(help=doc(R, "ties"))] = default(R, "ties"),
    full_ranking: Annotated[bool, typer.Option("--full-ranking", help=doc(R, "full_ranking"))] = default(R, "full_ranking"),
    queries: Annotated[str, typer.Option(help=doc(R, "queries"))] = default(R, "queries"),
    model: Annotated[str | None, typer.Option(help=doc(R, "model"))] = default(R, "model"),
    recommender: Annotated[Path | None, typer.Option(
        help="A saved recommender folder: the `recommender` method ranks with it as served (its model, "
             "retrievers and fitted fusion weights).")] = None,
    models: Annotated[Path | None, typer.Option(help=MODELS_HELP)] = None,
    param: Annotated[list[str] | None, typer.Option(help=PARAM_HELP)] = None,
    refit: Annotated[bool, typer.Option("--refit", help="Fit retrievers again even if saved ones exist.")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Report folder (results.json/.md/.png, per_user.parquet); default runs/eval/<data>-<task>-<candidates>.")] = None,
    save_candidates: Annotated[Path | None, typer.Option(
        help="Also save the candidate set (.npz) so other methods can be evaluated on the same one.")] = None,
    batch_size: Annotated[int, typer.Option(help=doc(R, "batch_size"))] = default(R, "batch_size"),
) -> None:
    """Evaluate methods on the paper's protocol (leave-one-out; HR@1/3/5, NDCG@3/5, MRR with 95% CIs;
    paired per-user differences between the methods)."""
    if ties not in ("random", "pessimistic", "optimistic"):
        raise typer.BadParameter("--ties must be random, pessimistic or optimistic")
    started = time.monotonic()
    rec = None
    if recommender is not None:
        from instructrec.recommender import Recommender

        with distributed.main_first():
            rec = Recommender.load(recommender, device=distributed.device())
    if data is None and rec is None:
        raise typer.BadParameter("give --data (a dataset folder) or --recommender DIR")
    dataset = Dataset.load(data) if data is not None else rec.dataset
    if rec is not None and data is not None and rec.dataset.counts() != dataset.counts():
        raise typer.BadParameter(f"--recommender {recommender} was built on another dataset than --data {data}")
    split = leave_one_out(dataset)
    methods = [m.strip() for m in method.split(",") if m.strip()]
    params = parse_params(param or [])
    data_dir = data if data is not None else recommender / "data"  # type: ignore[operator]
    models_default = _models_dir(data if data is not None else recommender, models)  # type: ignore[arg-type]
    store = RetrieverStore(dataset, split, models_default, params, refit)
    if rec is not None:  # the recommender's own retrievers answer for their names
        store.preload(rec.retriever.name, rec.retriever)
        if rec.text_retriever is not None:
            store.preload(rec.text_retriever.name, rec.text_retriever)
    settings = RunSettings(methods, task, candidates, users, valid_users, seed, ties, full_ranking,  # type: ignore[arg-type]
                           queries, batch_size, model)
    ctx = make_context(dataset, split, store, model, rec)
    results, cands = run_evaluation(dataset, split, settings, store, ctx=ctx)
    if not distributed.is_main():  # several processes: every rank holds the same results; rank 0 writes
        return
    if save_candidates is not None:
        path = cands.save(save_candidates)
        console.print(f"saved the candidate set to {path}")
    out = out or Path("runs") / "eval" / _slug(f"{data_dir.resolve().name}-{task}-{candidates}")
    paired = paired_differences(results)
    record = {**vars(settings), "data": str(data_dir), "recommender": str(recommender) if recommender else None,
              "dataset": dataset.manifest.source, "dataset_counts": dataset.counts(), "models": str(store.root),
              "params": params, "paired": paired,
              "fusion_weights": {r.method: r.settings["fusion_weight"] for r in results if "fusion_weight" in r.settings},
              "candidate_set": {"spec": cands.spec, "seed": cands.seed, "stage": cands.stage, "size": cands.size,
                                "users": len(cands), **cands.info},
              "seconds": round(time.monotonic() - started, 1), "processes": distributed.world_size()}
    paths = write_report(results, out, record, title=f"{data_dir.name}: {task}, candidates {candidates}",
                         extra_markdown=paired_markdown(paired))
    console.print(_table(results), width=min(console.width, 80))
    for p in paired:
        d = p["HR@1"]
        console.print(f"paired HR@1 {p['a']} - {p['b']}: {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
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
    query: Annotated[str | None, typer.Option(help="Text query (bm25, embedding, dense, hybrid).")] = None,
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
    """The headline metrics, sized for an 80-column terminal (the report holds every metric)."""
    table = Table(title="evaluation (mean, 95% CI half-width)", title_justify="left")
    table.add_column("method", no_wrap=True, max_width=28)
    table.add_column("users", justify="right")
    for col in ("HR@1", "HR@5", "NDCG@5", "MRR", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in results:
        s = r.summary
        hr1 = f"{s['HR@1']['mean']:.3f}±{s['HR@1']['ci_high'] - s['HR@1']['mean']:.3f}" if "HR@1" in s else ""
        label = r.method if r.candidates != "full" else f"{r.method} (full)"
        table.add_row(label, f"{len(r.rows):,}", hr1,
                      *(f"{s[m]['mean']:.3f}" if m in s else "" for m in ("HR@5", "NDCG@5", "MRR")),
                      f"{r.seconds:.0f}")
    return table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


__all__ = ["CandidateSet", "Ties", "evaluate_cmd", "retrieve_app"]
