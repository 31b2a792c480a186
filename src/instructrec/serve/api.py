"""The HTTP API and web page: `create_app(recommender, settings)` builds the FastAPI app.

Endpoints: `POST /v1/recommend`, `GET /v1/items?q=` (title search), `GET /v1/users/{id}`,
`GET /healthz`, the web page at `/` (static files, no build step), the OpenAPI description at
`/openapi.json` and its docs pages at `/docs` and `/redoc` (assets served locally, see `docs.py`).
The recommender is loaded once (at start-up, when a loader is given) and every recommend call
runs on one model thread (see `worker.py` for why), the requests waiting together in one batched
call (`ServeSettings.max_batch`). An unknown `user_id` gets 404 with a message
to send a `history` instead, and so does an unknown history item or candidate (checked before the
wait for the model); requests with neither a user nor a history are a cold start that the
recommender answers from the request text alone.

No `from __future__ import annotations`: FastAPI must see the request model built per settings.
"""

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import instructrec
from instructrec.errors import InstructRecError
from instructrec.serve.docs import add_docs
from instructrec.serve.middleware import BodySizeLimitMiddleware, SecurityHeadersMiddleware
from instructrec.serve.protocol import RecommenderLike, recommend_batch
from instructrec.serve.schemas import (
    ErrorResponse,
    ItemOut,
    ItemSearchResponse,
    RecommendedItemOut,
    RecommendResponse,
    UserOut,
    build_recommend_request,
    catalogue_examples,
)
from instructrec.serve.settings import ServeLimits, ServeSettings
from instructrec.serve.worker import BatchWorker, CallerGone, QueueFull, SerialWorker

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
# The page loads nothing from elsewhere and has no inline script, so even a rendering bug
# could not run injected markup. (The docs pages have their own policy, see `docs.py`.)
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (404, "Unknown user (send `history` instead), or a history item or candidate not in the catalogue."),
        (413, "Body larger than max_body_bytes."),
        (422, "Invalid request (not UTF-8 JSON, unknown field, wrong type, user_id with history); "
              "`message` names any limit broken."),
        (503, "Too many requests waiting for the model, or the model is still loading."))
}


def _limit_name(loc: tuple[Any, ...], limits: ServeLimits) -> str | None:
    """Which configured limit a validation error at `loc` concerns (None when it is not a limit)."""
    field = loc[1] if len(loc) > 1 and loc[0] in ("body", "query", "path") else None
    element = len(loc) > 2
    if field == "conversation":  # conversation, conversation.N.request, conversation.N.items[.M]
        part = loc[3] if len(loc) > 3 else None
        return {None: "max_turns", "request": "max_request_chars",
                "items": "max_item_chars" if len(loc) > 4 else "max_k"}.get(part)
    return {
        "request": "max_request_chars", "k": "max_k", "q": "max_query_chars", "limit": "max_search_results",
        "user_id": "max_item_chars", "item_id": "max_item_chars",
        "history": "max_item_chars" if element else "max_history",
        "candidates": "max_item_chars" if element else "max_candidates",
    }.get(field)


def _validation_message(errors: list[dict[str, Any]], limits: ServeLimits) -> str:
    parts = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON ({reason} at character {loc[-1]})")
            continue
        where = ".".join(str(p) for p in loc[1:]) or "body"
        text = f"{where}: {err.get('msg', 'invalid')}"
        name = _limit_name(loc, limits)
        if name and err.get("type") in {"string_too_long", "too_long", "less_than_equal"}:
            text += f" (limit {name}={getattr(limits, name)})"
        parts.append(text)
    return "; ".join(parts)


class _Catalogue:
    """What the API checks before a request waits for the model: which item ids and titles exist
    (matched as `Recommender.resolve_items` does: stripped, titles case-insensitive)."""

    def __init__(self, dataset: Any, limits: ServeLimits) -> None:
        self.ids = {str(i) for i in dataset.item_ids}
        self.titles = {str(t).casefold() for t in dataset.titles}
        self.examples = catalogue_examples(dataset, limits)

    def unknown(self, entries: list[str] | None) -> str | None:
        """The first entry that names no item, if any."""
        for entry in entries or ():
            key = entry.strip()
            if key not in self.ids and key.casefold() not in self.titles:
                return entry
        return None


def create_app(recommender: RecommenderLike | Callable[[], RecommenderLike],
               settings: ServeSettings | None = None, model_thread: ThreadPoolExecutor | None = None) -> FastAPI:
    """Build the app around a recommender, or around a zero-argument loader called once at start-up
    on the model thread; `model_thread`: the thread a given recommender was loaded on
    (`serve.worker.load_on_model_thread`, which says why), to run its calls on."""
    settings = settings or ServeSettings()
    limits = settings.limits
    loader = None if isinstance(recommender, RecommenderLike) else recommender
    model_worker = SerialWorker("model", limits.max_queue, model_thread)
    search_worker = SerialWorker("search", limits.max_queue)

    def run_batch(calls: list[dict[str, Any]]) -> list[Any]:
        """On the model thread: one batch of recommend calls; each answer carries the batch's time."""
        started = time.perf_counter()
        results = recommend_batch(app.state.recommender, calls)
        seconds = time.perf_counter() - started
        return [r if isinstance(r, Exception) else (r, seconds) for r in results]

    batcher = BatchWorker(model_worker, run_batch, settings.max_batch, settings.batch_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.recommender is None and loader is not None:
            logger.info("loading the recommender ...")
            started = time.perf_counter()
            app.state.recommender = await model_worker.run(loader)
            logger.info("recommender loaded in %.1f s", time.perf_counter() - started)
        if app.state.recommender is not None:
            catalogue(app.state.recommender)  # built now rather than on the first request
            if hasattr(app.state.recommender, "use_prefix_cache"):  # a server sees the same users again
                app.state.recommender.use_prefix_cache(settings.prefix_cache_entries)
        yield
        batcher.close()
        search_worker.close()

    app = FastAPI(
        title="instructrec",
        version=instructrec.__version__,
        summary="InstructRec recommendations: say what you want, get ranked items and the instruction used.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN; add_docs serves the same from local files
        redoc_url=None,
    )
    add_docs(app)
    app.state.recommender = None if loader is not None else recommender
    app.state.settings = settings
    RecommendRequest = build_recommend_request(limits)  # noqa: N806 (a class)
    catalogues: dict[int, _Catalogue] = {}

    def catalogue(rec: RecommenderLike) -> _Catalogue:
        if id(rec) not in catalogues:
            catalogues.clear()
            catalogues[id(rec)] = _Catalogue(rec.dataset, limits)
        return catalogues[id(rec)]

    def openapi() -> dict[str, Any]:
        """FastAPI's (cached) document, with request examples from the served catalogue once it is
        loaded, so that the documented examples are requests this server answers with 200."""
        schema = FastAPI.openapi(app)
        rec = app.state.recommender
        if rec is not None and catalogue(rec).examples:
            schema["components"]["schemas"]["RecommendRequest"]["examples"] = catalogue(rec).examples
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    def current() -> RecommenderLike:
        rec = app.state.recommender
        if rec is None:
            raise HTTPException(503, "the model is still loading; try again in a few seconds",
                                headers={"Retry-After": "5"})
        return rec

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in err.items() if k not in ("input", "url")} for err in exc.errors()]
        return JSONResponse(status_code=422, content=jsonable_encoder(
            {"detail": errors, "message": _validation_message(errors, limits)}))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 "There was an error parsing the body" when the body is not text it can
        # decode (not UTF-8) or nests too deep for the JSON parser; for the caller that is malformed
        # JSON like any other, so it gets the same documented 422 as a syntax error.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
            reason = ("it is not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else
                      "it nests too deeply" if isinstance(cause, RecursionError) else str(cause))
            errors = [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: {reason}"}]
            return JSONResponse(status_code=422, content={"detail": errors,
                                                          "message": f"the body is not valid JSON ({reason})"})
        return await http_exception_handler(request, exc)

    @app.exception_handler(InstructRecError)
    async def _user_error(request: Request, exc: InstructRecError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", summary="Liveness, catalogue size and the limits in force")
    async def healthz() -> dict[str, Any]:
        rec = current()
        return {"status": "ok", "users": int(rec.dataset.n_users), "items": int(rec.dataset.n_items),
                "pending": batcher.pending, "limits": settings.public_limits()}

    @app.get("/v1/items", response_model=ItemSearchResponse, responses=_ERRORS, summary="Search items by title")
    async def search_items(
        q: str = Query(..., min_length=1, max_length=limits.max_query_chars, description="Words of the title."),
        limit: int = Query(20, ge=1, le=limits.max_search_results),
    ) -> ItemSearchResponse:
        rec = current()
        try:
            found = await search_worker.run(rec.search_items, q, limit=limit)
        except QueueFull:
            raise HTTPException(503, "too many searches are waiting (max_queue); try again shortly",
                                headers={"Retry-After": "1"}) from None
        return ItemSearchResponse(query=q, items=[ItemOut(item_id=str(i), title=str(t)) for i, t in found])

    @app.get("/v1/users/{user_id}", response_model=UserOut, responses=_ERRORS, summary="A known user's recent items")
    async def user(user_id: str = PathParam(..., max_length=limits.max_item_chars)) -> UserOut:
        rec = current()
        if not rec.has_user(user_id):
            raise HTTPException(404, f"unknown user id {user_id!r}; build a history from item titles instead")
        ds = rec.dataset
        seq = ds.sequences[ds.user_index(user_id)]
        recent = [ItemOut(item_id=str(ds.item_ids[i]), title=ds.title(i)) for i in seq[::-1][:10]]
        return UserOut(user_id=user_id, n_interactions=len(seq), recent=recent)

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=_ERRORS,
              summary="Rank items for a user (id or history) and a free-text request")
    async def recommend(body: RecommendRequest, request: Request) -> Any:
        rec = current()
        if body.user_id is not None and not rec.has_user(body.user_id):
            raise HTTPException(404, f"unknown user id {body.user_id!r}; send the user's `history` "
                                     "(item ids or titles) instead of `user_id`")
        # Items the catalogue lacks are answered here, without a wait in line for the model.
        known = catalogue(rec)
        if (missing := known.unknown(body.history)) is not None:
            raise HTTPException(404, f"unknown item {missing!r} in the history; give item ids or exact titles "
                                     "(search titles with /v1/items?q=)")
        if (missing := known.unknown(body.candidates)) is not None:
            raise HTTPException(404, f"unknown candidate {missing!r}; give item ids or exact titles "
                                     "(search titles with /v1/items?q=)")
        for n, turn in enumerate(body.conversation or ()):
            if (missing := known.unknown(turn.items)) is not None:
                raise HTTPException(404, f"unknown item {missing!r} in conversation.{n}.items; send the item ids "
                                         "the earlier answers showed")
        # The conversation travels with the request (turns carry `request` and `items`, as
        # `recommender.conversation.Turn` does); passed only when there is one.
        extra = {"conversation": list(body.conversation)} if body.conversation else {}

        call = {"user_id": body.user_id, "history": body.history, "request": body.request, "k": body.k,
                "candidates": body.candidates, "exclude_seen": body.exclude_seen, **extra}
        try:
            result, seconds = await batcher.run(call, gone=request.is_disconnected)
        except CallerGone:
            logger.info("client left while waiting for the model; call skipped")
            return Response(status_code=499)  # nobody reads it; nginx's code for "client closed"
        except QueueFull:
            raise HTTPException(503, f"{limits.max_queue} requests are already waiting for the model (max_queue); "
                                     "try again shortly", headers={"Retry-After": "1"}) from None
        return RecommendResponse(
            items=[RecommendedItemOut(rank=r, item_id=it.item_id, title=it.title, score=it.score,
                                      llm_score=it.llm_score, retrieval_score=it.retrieval_score,
                                      reason=getattr(it, "reason", ""))
                   for r, it in enumerate(result.items, start=1)],
            instruction=result.instruction, aspects=result.aspects, template_id=result.template_id,
            request_kind=result.request_kind, notes=list(result.notes), elapsed_ms=round(seconds * 1000, 3),
            constraints=list(getattr(result, "constraints", [])),
            nothing_matches=bool(getattr(result, "nothing_matches", False)),
        )

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], allow_credentials=False)
    app.add_middleware(SecurityHeadersMiddleware, page_headers={"Content-Security-Policy": PAGE_CSP,
                                                                "X-Frame-Options": "DENY"},
                       page_prefixes=("/static/",))
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=limits.max_body_bytes)
    return app
