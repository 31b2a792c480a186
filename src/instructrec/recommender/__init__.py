"""The end-to-end recommender: route a request, retrieve candidates, rerank with the tuned LLM."""

from instructrec.recommender.recommender import Recommender, RecommenderSettings
from instructrec.recommender.results import RecommendedItem, RecommendResult

__all__ = ["RecommendResult", "RecommendedItem", "Recommender", "RecommenderSettings"]
