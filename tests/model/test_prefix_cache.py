"""The per-user KV cache (issue 12): prompts that share their first tokens with a cached prompt
reuse its keys and values, and score what the uncached path scores."""

from __future__ import annotations

import numpy as np
import pytest

from instructrec.errors import ModelError
from instructrec.model import load_model
from instructrec.model.scoring import CandidateScorer, PrefixCache, ScoringSettings

HISTORY = "The user has played Turbo Kart, Gem Match, Star Blaster, Goal Cup, Home Run and Word Maze."
REQUESTS = [  # one user's successive requests: same history first, then what varies
    (f"{HISTORY} The user now wants a racing game. Which one?", ["Turbo Kart", "Drift King", "Gem Match"]),
    (f"{HISTORY} A puzzle game please.", ["Block Drop", "Word Maze Gem Match", "Speed Rally"]),
    (f"{HISTORY} Something to play with friends.", ["Goal Cup", "Slam Dunk", "Gun Squad", "Laser Strike"]),
    ("The user has played Slam Dunk. The user now wants a shooter.", ["Gun Squad", "Home Run"]),
    (f"{HISTORY} The user now wants a racing game. Which one?", ["Speed Rally", "Home Run"]),
]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu")


@pytest.mark.parametrize("batch", [1, 3])
def test_cached_history_scores_as_uncached(tiny, batch):
    settings = ScoringSettings(instruction_batch_size=batch, candidate_batch_size=4)
    plain = CandidateScorer(tiny, settings)
    cache = PrefixCache(max_entries=4)
    cached = CandidateScorer(tiny, settings, prefix_cache=cache)
    texts, cands = [r[0] for r in REQUESTS], [r[1] for r in REQUESTS]
    _assert_cached_scores_as_uncached(cached, cache, texts, cands, plain.score(texts, cands))
    assert len(cache) <= 4


def test_prefix_cache_replaces_a_users_previous_prompt_and_stays_bounded(tiny):
    cache = PrefixCache(max_entries=2)
    scorer = CandidateScorer(tiny, prefix_cache=cache)
    scorer.score([REQUESTS[0][0]], [REQUESTS[0][1]])
    scorer.score([REQUESTS[1][0]], [REQUESTS[1][1]])  # shares most of its tokens: replaces the first
    assert len(cache) == 1
    scorer.score([REQUESTS[3][0]], [REQUESTS[3][1]])  # another user: added
    scorer.score(["Completely different text about nothing at all."], [["Goal Cup"]])
    assert len(cache) == 2  # least recently used left
    key, shared = cache.lookup(scorer.encoder.prompt_ids(REQUESTS[2][0]))
    assert key is None and shared == 0  # the first user's entry was the one evicted


def _assert_cached_scores_as_uncached(cached, cache, texts, cands, want) -> None:
    """Twice through the cache (the second round finds every prompt's history, and more, stored):
    the scores equal the uncached ones within 1e-4, and the later requests reused the history
    (only what follows it was computed)."""
    for _ in range(2):
        got = cached.score(texts, cands)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    history_tokens = len(cached.encoder.prompt_ids(HISTORY)) - 2
    assert cache.tokens_reused >= 3 * history_tokens


def test_bad_prefix_cache_size_is_one_clear_error():
    with pytest.raises(ModelError, match="max_entries"):
        PrefixCache(max_entries=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_listwise_cached_history_scores_as_uncached(tiny, batch):
    from instructrec.instructions.render import LISTWISE_ANSWER_HINT, RenderSettings, format_candidates
    from instructrec.model.listwise import ListwiseScorer

    def text(ins: str, cands: list[str]) -> str:  # the candidate list after the request, as rendered
        return f"{ins}{format_candidates(cands, RenderSettings(), 'letters')}\n{LISTWISE_ANSWER_HINT}"

    texts, cands = [text(*r) for r in REQUESTS], [r[1] for r in REQUESTS]
    want = ListwiseScorer(tiny, batch_size=batch).score(texts, cands)
    cache = PrefixCache(max_entries=4)
    cached = ListwiseScorer(tiny, batch_size=batch, prefix_cache=cache)
    _assert_cached_scores_as_uncached(cached, cache, texts, cands, want)
    assert cache.tokens_seen > cache.tokens_reused
