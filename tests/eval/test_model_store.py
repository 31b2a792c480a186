"""ModelStore holds one LLM at a time when asked (issue 12: the quickstart's zero-shot and tuned
models are no longer both resident)."""

from __future__ import annotations

from instructrec.eval.methods import ModelStore


class _Scorer:
    truncated = 0


def test_keep_only_releases_the_other_models_and_reloads_on_demand():
    loads: list[str] = []

    def loader(spec: str) -> _Scorer:
        loads.append(spec)
        return _Scorer()

    store = ModelStore(aliases={"tuned": "/runs/models/tuned-abc"}, loader=loader)
    zero_shot = store("default")
    assert store("default") is zero_shot and loads == ["default"]
    store.keep_only("tuned")
    tuned = store("tuned")
    assert loads == ["default", "/runs/models/tuned-abc"] and store._cache.keys() == {"/runs/models/tuned-abc"}
    store.keep_only("tuned")
    assert store("tuned") is tuned  # the kept one stays loaded, memo included
    store.keep_only(None)
    assert not store._cache
    store("default")
    assert loads[-1] == "default"
