"""Serving: the HTTP API, the web page and the `recommend`/`serve` commands' shared pieces."""

from instructrec.serve.api import create_app
from instructrec.serve.protocol import RecommenderLike, load_recommender
from instructrec.serve.settings import ServeLimits, ServeSettings

__all__ = ["RecommenderLike", "ServeLimits", "ServeSettings", "create_app", "load_recommender"]
