"""Serving: the HTTP API, the web page and the `recommend`/`serve` commands' shared pieces.

`create_app` is imported on first use: `instructrec recommend` reads `serve.protocol` and must not
pay for importing FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from instructrec.serve.protocol import RecommenderLike, load_recommender
from instructrec.serve.settings import ServeLimits, ServeSettings

if TYPE_CHECKING:
    from instructrec.serve.api import create_app

__all__ = ["RecommenderLike", "ServeLimits", "ServeSettings", "create_app", "load_recommender"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from instructrec.serve.api import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
