"""The paper's evaluation protocol: candidate sets, the Scorer protocol, metrics and reports."""

from instructrec.eval.candidate_sets import CandidateSet, build_candidates, parse_spec
from instructrec.eval.metrics import per_user_metrics, summarize, target_ranks
from instructrec.eval.protocol import (
           TASKS,
           EvalResult,
           RetrieverScorer,
           Scorer,
           evaluate,
           full_ranking,
           get_task,
)

__all__ = ["TASKS", "CandidateSet", "EvalResult", "RetrieverScorer", "Scorer", "build_candidates", "evaluate",
           "full_ranking", "get_task", "parse_spec", "per_user_metrics", "summarize", "target_ranks"]
