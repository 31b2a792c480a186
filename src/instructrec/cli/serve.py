"""`instructrec recommend` (one ranked list in the terminal) and `instructrec serve` (HTTP API + web page)."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from instructrec.cli.common import console
from instructrec.errors import InstructRecError
from instructrec.serve.protocol import load_recommender, split_history
from instructrec.serve.settings import ServeLimits, ServeSettings
from instructrec.settings_docs import doc

logger = logging.getLogger(__name__)

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Saved recommender folder (printed by `instructrec quickstart`).")]


def _result_table(result) -> Table:
    table = Table(title="Recommendations", show_header=True)
    table.add_column("rank", justify="right")
    table.add_column("title")
    table.add_column("score", justify="right")
    has_reason = any(getattr(it, "reason", "") for it in result.items)
    if has_reason:
        table.add_column("why")
    has_llm = any(it.llm_score is not None for it in result.items)
    has_retrieval = any(it.retrieval_score is not None for it in result.items)
    if has_llm:
        table.add_column("llm", justify="right")
    if has_retrieval:
        table.add_column("retrieval", justify="right")
    for rank, item in enumerate(result.items, start=1):
        row: list[str | Text] = [str(rank), Text(item.title), f"{item.score:.4f}"]  # titles are data, not markup
        if has_reason:
            row.append(Text(item.reason))
        if has_llm:
            row.append("–" if item.llm_score is None else f"{item.llm_score:.4f}")
        if has_retrieval:
            row.append("–" if item.retrieval_score is None else f"{item.retrieval_score:.4f}")
        table.add_row(*row)
    return table


def recommend(
    request: Annotated[str | None, typer.Argument(help="What the user asks for, e.g. \"something funny for my kids\".")] = None,
    model: ModelOpt = ...,
    user: Annotated[str | None, typer.Option("--user", "-u", help="A user id the recommender knows.")] = None,
    history: Annotated[list[str] | None, typer.Option(
        "--history", help="Items the user liked, oldest first: ids or exact titles; repeat the option or separate with commas.",
    )] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="How many items to list.")] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Allow items already in the history.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object (for scripts).")] = False,
    show_instruction: Annotated[bool, typer.Option("--show-instruction", help="Also print the instruction text.")] = False,
    refine: Annotated[list[str] | None, typer.Option(
        "--refine", help="A follow-up that refines the answer before it (\"something older\", \"cheaper\", "
                         "\"no more sequels\", \"more like #3\"); repeat for more turns. The last answer is printed.",
    )] = None,
) -> None:
    """Rank items for a user (--user or --history) and a free-text request, and say how it was read."""
    if user is not None and history:
        raise InstructRecError("give either --user or --history, not both.")
    rec = load_recommender(model)
    if user is not None and not rec.has_user(user):
        raise InstructRecError(f"unknown user id {user!r}; pass --history with items the user liked instead.")
    items = split_history(history, rec.dataset) if history else None
    result = rec.recommend(user_id=user, history=items, request=request, k=k, exclude_seen=not include_seen)
    if refine:
        from instructrec.recommender.conversation import Turn

        turns = []
        for text in refine:  # each follow-up sends the earlier turns back, as the web page does
            turns.append(Turn(request or "", tuple(it.item_id for it in result.items)))
            request = text
            result = rec.recommend(user_id=user, history=items, request=text, k=k, exclude_seen=not include_seen,
                                   conversation=turns)
        if not as_json:
            for n, turn in enumerate(turns, start=1):
                console.print(f"turn {n}: {turn.request or '(no request)'}", highlight=False, markup=False)
            console.print(f"turn {len(turns) + 1}: {request}", highlight=False, markup=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    console.print(_result_table(result))
    template = result.template_id or "none (first stage only)"
    console.print(f"aspects [bold]{escape(result.aspects)}[/] · template [bold]{escape(template)}[/] · "
                  f"request read as [bold]{escape(result.request_kind)}[/]", highlight=False)
    if getattr(result, "constraints", None):
        console.print("kept: " + " · ".join(result.constraints), highlight=False, markup=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if show_instruction:
        console.print("instruction:", style="bold")
        console.print(result.instruction or "(no LLM instruction was used)", highlight=False, markup=False)


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message before loading the model when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InstructRecError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host.") from None


def serve(
    model: ModelOpt = ...,
    host: Annotated[str, typer.Option(help="Interface to bind; the default is reachable from this machine only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow browser calls from this origin (repeatable); none by default.")] = None,
    max_k: Annotated[int, typer.Option(help="Most items per answer.")] = ServeLimits.max_k,
    max_history: Annotated[int, typer.Option(help="Most items in a request's history.")] = ServeLimits.max_history,
    max_request_chars: Annotated[int, typer.Option(help="Longest request text.")] = ServeLimits.max_request_chars,
    max_queue: Annotated[int, typer.Option(help="Most requests waiting for the model before 503.")] = ServeLimits.max_queue,
    max_batch: Annotated[int, typer.Option(help=doc(ServeSettings, "max_batch"))] = ServeSettings.max_batch,
    batch_wait_ms: Annotated[float, typer.Option(help=doc(ServeSettings, "batch_wait_ms"))] = ServeSettings.batch_wait_ms,
    prefix_cache_entries: Annotated[int, typer.Option(help=doc(ServeSettings, "prefix_cache_entries"))] = (
        ServeSettings.prefix_cache_entries),
) -> None:
    """Serve the HTTP API (/v1/recommend, /v1/items, /healthz, /docs) and the web page at /."""
    import uvicorn

    from instructrec.serve.api import create_app

    limits = ServeLimits(max_k=max_k, max_history=max_history, max_request_chars=max_request_chars, max_queue=max_queue)
    settings = ServeSettings(host=host, port=port, cors_origins=tuple(cors_origin or ()), limits=limits,
                             max_batch=max_batch, batch_wait_ms=batch_wait_ms,
                             prefix_cache_entries=prefix_cache_entries)
    if not settings.is_loopback:
        logger.warning("binding %s: other machines can reach this server, and it has no authentication", host)
    _check_port(host, port)
    from instructrec.serve.worker import load_on_model_thread

    with console.status(f"loading the recommender from {model} ..."):  # once, before accepting connections
        rec, model_thread = load_on_model_thread(lambda: load_recommender(model))
    console.print(f"serving on http://{host}:{port}/ (API docs at /docs); Ctrl+C stops", highlight=False)
    uvicorn.run(create_app(rec, settings, model_thread), host=host, port=port, workers=1, log_level="info")
