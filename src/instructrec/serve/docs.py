"""The API documentation pages (`/docs`: Swagger UI, `/redoc`: ReDoc), served without a CDN.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
they are blank. Here the same pages load the JavaScript and CSS from the `fastapi-offline`
package (a dependency: its wheel ships swagger-ui-dist 5 and the ReDoc standalone bundle), under
`/docs-static/`. Swagger UI 5 is needed: FastAPI writes OpenAPI 3.1, which Swagger UI 4 does not
render. Each page gets a Content-Security-Policy that allows only this server's own files plus the
hash of the page's one inline start-up script, so the docs never reach another host either.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from instructrec.errors import InstructRecError

ASSETS_URL = "/docs-static"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_dir() -> Path:
    """The installed folder holding the Swagger UI and ReDoc files (a clear error if it is missing)."""
    spec = importlib.util.find_spec("fastapi_offline")
    folder = Path(spec.origin).parent / "static" if spec and spec.origin else None
    missing = [name for name in ASSET_FILES if folder is None or not (folder / name).is_file()]
    if missing:
        raise InstructRecError(
            f"the API docs files {', '.join(missing)} are missing (expected in the fastapi-offline package); "
            "reinstall instructrec (`pip install -e .`), which depends on fastapi-offline."
        )
    return folder


def _csp(html: str, worker_blob: bool = False) -> str:
    """A policy for one docs page: own files only, plus the page's inline scripts by hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _INLINE_SCRIPT.findall(html))
    # Both UIs set style attributes from script (and ReDoc injects <style> elements), so styles
    # may be inline; scripts may not.
    policy = (f"default-src 'self'; script-src 'self' {hashes}".rstrip() + "; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
              "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    if worker_blob:  # ReDoc runs its search index in a worker created from a blob: URL
        policy += "; worker-src 'self' blob:"
    return policy


def _with_csp(response: HTMLResponse, worker_blob: bool = False) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = _csp(response.body.decode(), worker_blob)
    response.headers["X-Frame-Options"] = "DENY"
    return response


def add_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Mount the docs assets and add the two docs pages to an app built with `docs_url=None, redoc_url=None`."""
    folder = assets_dir()
    app.mount(ASSETS_URL, StaticFiles(directory=folder), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return _with_csp(get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,  # the API has no authentication
            # No validator badge: it would be an image from validator.swagger.io.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        ))

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return _with_csp(get_redoc_html(
            openapi_url=root + openapi_url, title=f"{app.title} - API reference",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False,
        ), worker_blob=True)
