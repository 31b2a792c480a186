"""The end-to-end recommender: route a request, retrieve candidates, rerank with the tuned LLM.

The names below load on first use (PEP 562): the recommender pulls in torch and transformers,
while the evaluation's method grammar only needs `recommender.reranker`'s roles and fusion types,
and the command line must start without torch (`tests/test_cli_startup.py`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instructrec.recommender.recommender import Recommender, RecommenderSettings
    from instructrec.recommender.results import RecommendedItem, RecommendResult

__all__ = ["RecommendResult", "RecommendedItem", "Recommender", "RecommenderSettings"]
_HOME = {"Recommender": "recommender", "RecommenderSettings": "recommender",
         "RecommendResult": "results", "RecommendedItem": "results"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
