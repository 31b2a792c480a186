"""Two small ASGI middlewares: a request body-size limit (HTTP 413) and security headers.

Both are plain ASGI rather than `@app.middleware("http")`, whose per-request task and streaming
wrapper cost more than the stub recommender's whole answer in the load benchmark.

Body limit:
Hand-written because the body limit built into recent FastAPI/Starlette releases answers a bare
"Content Too Large" that does not say which limit applies, and older releases that our
`fastapi>=0.110` allows have none; this one names the limit. It checks the
declared Content-Length first and also counts streamed (chunked) bodies as they arrive, so a
client cannot make the server buffer more than the limit.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class BodySizeLimitMiddleware:
    """Answer 413 with a JSON `detail` naming the limit when a body exceeds `max_bytes`."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (f"request body is larger than the limit of {self.max_bytes} bytes (max_body_bytes); "
                "send a shorter history or fewer candidates")

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": self._message()}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
        # Read the body here (it is small by construction) and replay it to the app, so the check
        # covers chunked bodies too and the app never sees a partial document.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeadersMiddleware:
    """Add `nosniff` and `no-referrer` to every answer, and `page_headers` (CSP, ...) to the page's."""

    def __init__(self, app: Any, page_headers: dict[str, str], page_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.page_headers = [(k.lower().encode(), v.encode()) for k, v in page_headers.items()]
        self.page_prefixes = page_prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_page = path == "/" or path.startswith(self.page_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if is_page:
                    extra += self.page_headers
                headers += [(name, value) for name, value in extra if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
