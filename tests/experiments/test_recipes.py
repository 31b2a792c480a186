"""Recipes: validation on load, and stages recomputed exactly when what they depend on changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from instructrec.cli.main import app
from instructrec.errors import InstructRecError
from instructrec.experiments.recipe import load_recipe, parse_overrides, recipe_from_dict, set_path
from instructrec.experiments.runner import run_recipe

REPO_RECIPES = Path(__file__).resolve().parents[2] / "benchmarks" / "recipes"

MINI = {
    "name": "mini",
    "data": "movielens",
    "seed": 0,
    "instructions": {"main": {"train_examples": 16, "valid_examples": 8}},
    "retrievers": {"sasrec": {"epochs": 1, "hidden": 16, "max_len": 10}},
    "models": {"tuned": {"base": "tiny", "instructions": "main",
                         "train": {"lora": True, "max_steps": 2, "batch_size": 4, "eval_steps": 2,
                                   "max_eval_examples": 4, "logging_steps": 1}}},
    "experiments": [{"name": "seq", "task": "seqrec", "candidates": "random:9", "users": 8, "valid_users": 8,
                     "methods": ["popularity", "sasrec", {"method": "llm:tuned", "name": "tuned"},
                                 {"method": "llm:tuned+sasrec", "name": "fused"}]}],
}


def _status(summary) -> dict[tuple[str, str], str]:
    return {(s["kind"], s["name"]): s["status"] for s in summary["stages"]}


def _computed(summary) -> set[tuple[str, str]]:
    return {k for k, v in _status(summary).items() if v == "computed"}


def _variant(**changes) -> dict:
    raw = copy.deepcopy(MINI)
    for path, value in changes.items():
        set_path(raw, path.replace("__", "."), value)
    return raw


def test_changed_settings_rerun_exactly_their_dependents(tmp_path):
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(copy.deepcopy(MINI)), out, progress=False)
    assert {s["status"] for s in first["stages"]} == {"computed"}
    kinds = {k for k, _ in _computed(first)}
    assert kinds == {"data", "instructions", "retrievers", "models", "candidates", "fusion", "results"}
    assert _computed(run_recipe(recipe_from_dict(copy.deepcopy(MINI)), out, progress=False)) == set()

    llm_results = {("results", "seq/tuned"), ("results", "seq/fused")}
    classical = {("results", "seq/popularity"), ("results", "seq/sasrec")}
    # More users: only the test candidates and every method's results.
    more = run_recipe(recipe_from_dict(_variant(experiments__0__users=10)), out, progress=False)
    assert _computed(more) == {("candidates", "seq-test")} | llm_results | classical
    # Other negatives: test and validation candidates, the fusion weight, every result.
    neg = run_recipe(recipe_from_dict(_variant(experiments__0__candidates="random:5")), out, progress=False)
    assert _computed(neg) == {("candidates", "seq-test"), ("candidates", "seq-valid"), ("fusion", "seq/fused")} \
        | llm_results | classical
    # Another model: the adapter, the fusion weight and the LLM methods' results, nothing classical.
    model = run_recipe(recipe_from_dict(_variant(models__tuned__train__max_steps=3)), out, progress=False)
    assert _computed(model) == {("models", "tuned"), ("fusion", "seq/fused")} | llm_results
    # Other templates (a mix weight): instructions, the tiny base built from them, adapter, LLM results.
    mix = run_recipe(recipe_from_dict(_variant(instructions__main__mix={"T3": 2.0})), out, progress=False)
    assert _computed(mix) == {("instructions", "main"), ("models", "tiny-base"), ("models", "tuned"),
                              ("fusion", "seq/fused")} | llm_results
    # Another seed: everything drawn or trained with it (the data stays).
    seed = run_recipe(recipe_from_dict(_variant(seed=1)), out, progress=False)
    assert ("data", "movielens") not in _computed(seed)
    assert {("instructions", "main"), ("retrievers", "sasrec"), ("models", "tuned"),
            ("candidates", "seq-test")} <= _computed(seed)
    # Switching back finds every earlier stage again.
    assert _computed(run_recipe(recipe_from_dict(copy.deepcopy(MINI)), out, progress=False)) == set()
    doc = json.loads((out / "summary.json").read_text())
    assert doc["results"] == first["results"]
    assert (out / "reports" / "seq" / "results.md").read_text().count("| fused |") == 1


def test_a_model_continues_training_from_another_models_weights(tmp_path):
    """`base: <another model>`: trained from that model's weights (its adapter folded in), after it,
    and again whenever it changes."""
    raw = copy.deepcopy(MINI)
    raw["models"]["more"] = {"base": "tuned", "instructions": "main",
                             "train": {"lora": True, "max_steps": 3, "batch_size": 4, "eval_steps": 3,
                                       "max_eval_examples": 4, "seed": 1}}
    raw["experiments"][0]["methods"] = ["popularity", {"method": "llm:more", "name": "more"}]
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(copy.deepcopy(raw)), out, progress=False)
    assert {("models", "tuned"), ("models", "more")} <= _computed(first)
    parent = next((out / "models").glob("tuned-*/"))
    child = next((out / "models").glob("more-*/"))
    assert json.loads((child / "instructrec.json").read_text())["base_model"] == str(parent)
    # loaded, the child is its own adapter over the parent's merged weights (not a nested, empty adapter)
    from safetensors.torch import load_file

    from instructrec.model import load_model

    loaded, merged_parent = load_model(child, device="cpu"), load_model(parent, device="cpu", merge_adapter=True)
    saved = load_file(child / "adapter_model.safetensors")
    state = loaded.model.state_dict()
    lora_b = [k for k in saved if "lora_B" in k]
    assert lora_b and any(saved[k].abs().sum() > 0 for k in lora_b)
    for key in lora_b:
        assert torch.equal(state[key.replace(".weight", ".default.weight")], saved[key])
    base_state = loaded.model.get_base_model().state_dict()
    for key, value in merged_parent.model.state_dict().items():
        torch.testing.assert_close(base_state[key.replace(".weight", ".base_layer.weight")]
                                   if key.replace(".weight", ".base_layer.weight") in base_state else base_state[key], value)
    raw["models"]["tuned"]["train"]["max_steps"] = 3
    again = run_recipe(recipe_from_dict(raw), out, progress=False)
    assert {("models", "tuned"), ("models", "more"), ("results", "seq/more")} <= _computed(again)
    assert ("results", "seq/popularity") not in _computed(again)


def test_incomplete_stage_is_not_reused(tmp_path):
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(copy.deepcopy(MINI)), out, progress=False)
    record = next((out / "results" / "seq").glob("tuned-*.json.stage.json"))
    record.unlink()  # as if killed after writing the output but before the record
    again = run_recipe(recipe_from_dict(copy.deepcopy(MINI)), out, progress=False)
    assert _computed(again) == {("results", "seq/tuned")}
    assert again["results"] == first["results"]


@pytest.mark.parametrize(("change", "message"), [
    ({"experiments__0__usrs": 3}, "usrs"),
    ({"experiments__0__users": "many"}, "users"),
    ({"experiments__0__task": "nope"}, "unknown task"),
    ({"experiments__0__candidates": "rand:9"}, "candidates spec"),
    ({"experiments__0__methods": ["llm+sasrec"]}, "llm:MODEL"),
    ({"experiments__0__methods": ["sasrec", "sasrec"]}, "unique"),
    ({"retrievers__sasrec__epoch": 3}, "unknown setting"),
    ({"retrievers__sasrec__holdout": -1}, "holdout"),
    ({"instructions__main__targets": "first"}, "targets"),
    ({"instructions__main__mix": {"T3": 1, "P9,I0,T3": 0}}, "match no template"),
    ({"instructions__main__mix": {"T0": 0, "T1": 0, "T2": 0, "T3": 0}}, "at least one positive"),
    ({"instructions__main__hard_negatives": {"retriever": "sasrec", "share": 0}}, "share"),
    ({"instructions__main__hard_negatives": {"retriever": "sasrec", "pool": 0}}, "pool"),
    ({"instructions__main__hard_negatives": {"retriever": "nope"}}, "unknown retriever"),
    ({"models__tuned__instructions": "other"}, "no instruction build"),
    ({"models__tuned__item_tokens": "sasrec"}, "item tokens need both"),
    ({"instructions__main__item_tokens": True}, "item tokens need both"),
    ({"models__tuned__item_tokens": "nope", "instructions__main__item_tokens": True}, "unknown retriever"),
    ({"models__tuned__train__max_step": 3}, "unknown training setting"),
    ({"models__tuned__base": "tuned"}, "cycle"),
    ({"recommender": {"fusion_from": "nothing"}}, "fusion_from"),
    ({"experiments__0__methods": ["sasrec", "stack:sasrec"]}, "at least two signals"),
    ({"experiments__0__methods": ["sasrec", {"method": "stack:llm:tuned+sasrec", "name": "st"}],
      "recommender": {"model": "tuned", "retriever": "sasrec", "fusion_from": "st"}}, "is a stacker of other signals"),
])
def test_recipe_validation_names_the_problem(change, message):
    with pytest.raises(InstructRecError, match=message):
        recipe_from_dict(_variant(**change))


def test_a_stacked_method_saves_its_weights_and_resumes(tmp_path):
    """A stacker's weights (a list, one per signal) go through the fusion stage and come back
    from it on a rerun, with the same results."""
    raw = _variant(experiments__0__methods=["popularity", "sasrec",
                                            {"method": "stack:llm:tuned+sasrec+popularity", "name": "stacked"},
                                            {"method": "stack:sasrec+popularity", "name": "classical"}])
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(copy.deepcopy(raw)), out, progress=False)
    weights = first["fusion_weights"]["seq"]
    assert len(weights["stacked"]) == 3 and len(weights["classical"]) == 2
    assert all(isinstance(w, float) for w in weights["stacked"] + weights["classical"])
    again = run_recipe(recipe_from_dict(copy.deepcopy(raw)), out, progress=False)
    assert _computed(again) == set()
    assert again["fusion_weights"] == first["fusion_weights"] and again["results"] == first["results"]


@pytest.mark.parametrize("path", sorted(REPO_RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    """The benchmark recipes (the GPU one runs in a 15-minute lease: a typo must not cost it)
    load with every name, spec and mix key resolved."""
    recipe = load_recipe(path)
    assert recipe.experiments and recipe.instructions


def test_builtin_quickstart_and_overrides(tmp_path):
    recipe = load_recipe("builtin:quickstart", parse_overrides(["experiments.*.users=7", "seed=3"]))
    assert [e.users for e in recipe.experiments] == [7, 7] and recipe.seed == 3
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(MINI))
    res = CliRunner().invoke(app, ["run", str(path), "--check", "--set", "experiments.0.valid_users=5"])
    assert res.exit_code == 0, res.output
    assert '"valid_users": 5' in res.output
    bad = CliRunner().invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert isinstance(bad.exception, InstructRecError) and "does not exist" in str(bad.exception)
    with pytest.raises(InstructRecError, match="PATH=VALUE"):
        parse_overrides(["users"])


def test_retriever_variants_and_new_instruction_fields_keep_old_hashes(tmp_path):
    """A `retrievers:` variant (`retriever: NAME`) is fitted and evaluated under its own name with
    its own settings; fields added to builds later (labels, notes) leave unset builds' hashes alone."""
    from instructrec.data.split import leave_one_out
    from instructrec.experiments.runner import StageRetrievers
    from instructrec.experiments.stages import StageLog

    raw = _variant(retrievers={"popularity": {}, "pop-b": {"retriever": "popularity"}},
                   experiments=[{"name": "seq", "task": "seqrec", "candidates": "random:9", "users": 8,
                                 "valid_users": 8, "methods": ["popularity", "pop-b"]}])
    recipe = recipe_from_dict(raw)
    summary = run_recipe(recipe, tmp_path / "run", progress=False)
    by_method = {r["method"]: r for r in summary["results"]}
    assert by_method["pop-b"]["HR@1"] == by_method["popularity"]["HR@1"]  # the same model, fitted twice
    log = StageLog(tmp_path / "run", lambda _: None)
    data = log.stage("data", "movielens", {"data": "movielens"})
    stages = StageRetrievers(log, recipe, None, leave_one_out, data)
    assert stages.params("pop-b") == ("popularity", {}) and stages.knows("pop-b")
    assert stages.stage("pop-b").path != stages.stage("popularity").path  # its own stage (same settings here)
    with pytest.raises(InstructRecError, match="retriever: NAME"):
        stages.params("nope")
    plain = recipe_from_dict(copy.deepcopy(MINI)).instructions["main"]
    assert set(plain.hashed()) == {"train_examples", "valid_examples", "mix", "templates", "teacher"}
    listwise = recipe_from_dict(_variant(instructions__main__candidate_labels="letters")).instructions["main"]
    assert listwise.hashed()["candidate_labels"] == "letters"
    with pytest.raises(InstructRecError, match="candidate_labels"):
        recipe_from_dict(_variant(instructions__main__candidate_labels="roman"))


def test_a_holdout_variant_is_fitted_without_each_users_last_training_item(tmp_path):
    """`holdout: 1` fits the variant on `withhold_last(split, 1)` under its own stage; `targets:
    last` enters the build's hash only when set (older builds keep theirs)."""
    import numpy as np

    from instructrec.data.split import leave_one_out
    from instructrec.experiments.runner import RecipeRun

    raw = _variant(retrievers={"popularity": {}, "pop-ho": {"retriever": "popularity", "holdout": 1}},
                   experiments=[{"name": "seq", "task": "seqrec", "candidates": "random:9", "users": 8,
                                 "valid_users": 8, "methods": ["popularity", "pop-ho"]}])
    run = RecipeRun(recipe_from_dict(raw), tmp_path / "run", lambda _: None, progress=False)
    assert run.retrievers.stage("pop-ho").settings["settings"]["holdout"] == 1
    assert "holdout" not in run.retrievers.stage("popularity").settings["settings"]
    split = leave_one_out(run.dataset)
    lasts = np.bincount([int(t[-1]) for t in split.train if len(t)], minlength=run.dataset.n_items)
    np.testing.assert_array_equal(run.retrievers("popularity").counts - run.retrievers("pop-ho").counts, lasts)
    plain = recipe_from_dict(copy.deepcopy(MINI)).instructions["main"]
    assert "targets" not in plain.hashed()
    assert recipe_from_dict(_variant(instructions__main__targets="last")).instructions["main"].hashed()["targets"] == "last"


def test_stage_log_records_each_stage_kinds_peak_memory_with_nested_stages(tmp_path):
    """A stage's peak memory is what it held while it computed, a nested stage's peak counts for
    the stage around it too, and the run summary reports the highest per kind. Run in a fresh
    interpreter: memory the other tests leave behind (and free meanwhile) moves the baseline."""
    import subprocess
    import sys

    script = f"""
import json, time
from pathlib import Path
import numpy as np
from instructrec.experiments.stages import StageLog

log = StageLog(Path({str(tmp_path)!r}))

def hold(mb):
    def compute(path):
        path.mkdir()
        block = np.ones(mb * 2**20 // 8)  # touched: resident
        time.sleep(0.3)
        return float(block[-1])
    return compute

def outer(path):
    log.run(log.stage("inner", "big", {{"mb": 400}}), hold(400), lambda p: 1.0)
    return hold(50)(path)

log.run(log.stage("small", "alone", {{"mb": 50}}), hold(50), lambda p: 1.0)
log.run(log.stage("outer", "wraps", {{}}), outer, lambda p: 1.0)
print(json.dumps({{"peaks": log.peak_memory(), "entries": log.entries}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    peaks = got["peaks"]
    assert peaks["inner"] >= peaks["small"] + 300  # 400 MB against 50 MB over the same baseline
    assert peaks["outer"] >= peaks["inner"]
    assert all(e["peak_rss_mb"] > 0 for e in got["entries"])


def test_an_experiments_history_budget_reaches_the_llms_without_one_of_their_own(tmp_path):
    """`history_items` on an experiment cuts the zero-shot model's prompts (its results change) and
    not the tuned model's, which renders as it was trained (same results); retriever stages and
    recipes that do not set it keep their hashes."""
    methods = ["popularity", {"method": "llm:tuned", "name": "tuned"}, {"method": "llm:tiny", "name": "zs"}]
    raw = _variant(experiments=[{"name": "seq", "task": "seqrec", "candidates": "random:9", "users": 8,
                                 "valid_users": 8, "methods": methods}])
    out = tmp_path / "run"
    run_recipe(recipe_from_dict(raw), out, progress=False)
    raw["experiments"][0]["history_items"] = 1
    second = run_recipe(recipe_from_dict(raw), out, progress=False)
    status = {s["name"]: s["status"] for s in second["stages"] if s["kind"] == "results"}
    assert status == {"seq/popularity": "reused", "seq/tuned": "computed", "seq/zs": "computed"}

    files = {name: sorted((out / "results" / "seq").glob(f"{name}-*.json")) for name in ("tuned", "zs")}
    loaded = {name: [json.loads(p.read_text()) for p in paths if not p.name.endswith(".stage.json")]
              for name, paths in files.items()}
    assert all(len(v) == 2 for v in loaded.values())
    tuned_a, tuned_b = loaded["tuned"]
    assert tuned_a["ranks"] == tuned_b["ranks"]  # the tuned model's own budget wins
    zs_a, zs_b = loaded["zs"]
    assert zs_a["rows"] == zs_b["rows"] and zs_a["ranks"] != zs_b["ranks"]  # one title instead of 20
    with pytest.raises(InstructRecError, match="history_items"):
        recipe_from_dict(_variant(experiments=[{**raw["experiments"][0], "history_items": 0}]))


def test_a_stacker_of_the_recommenders_signals_is_served_as_evaluated(tmp_path):
    """`recommender.fusion_from` may name a stacker of the LLM, the history retriever and the text
    retriever: the saved recommender stacks with its weights, and evaluated as a whole it gives the
    stacker's own results on the same users."""
    from typer.testing import CliRunner

    stacker = {"method": "stack:llm:tuned+sasrec@history+bm25@text", "name": "stacked"}
    raw = _variant(experiments__0__methods=["popularity", stacker],
                   recommender={"model": "tuned", "retriever": "sasrec", "text_retriever": "bm25",
                                "fusion_from": "stacked", "n_candidates": 10})
    out = tmp_path / "run"
    summary = run_recipe(recipe_from_dict(raw), out, progress=False)
    saved = json.loads((out / "recommender" / "settings.json").read_text())
    weights = saved["fusion"]["P1,I0,T3"]
    assert isinstance(weights, list) and len(weights) == 3  # the LLM, sasrec@history, bm25@text
    row = next(r for r in summary["results"] if r["method"] == "stacked")
    res = CliRunner().invoke(app, ["evaluate", "--recommender", str(out / "recommender"), "--method", "recommender",
                                   "--task", "seqrec", "--users", str(row["users"]), "--out", str(tmp_path / "eval"),
                                   "--models", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())["results"][0]["metrics"]
    for metric in ("HR@1", "NDCG@5", "MRR"):
        assert abs(evaluated[metric]["mean"] - row[metric]) < 1e-9, metric

    from instructrec.recommender.recommender import RecommenderSettings

    path = out / "recommender" / "settings.json"
    path.write_text(json.dumps({**saved, "fusion": {"P1,I0,T3": [0.5, 0.5]}}))
    with pytest.raises(InstructRecError, match="stacker of 2 signals"):
        from instructrec.recommender import Recommender

        Recommender.load(out / "recommender")
    assert RecommenderSettings(fusion={"P1,I0,T3": [1.0, 0.0, 0.0]}).fusion["P1,I0,T3"][0] == 1.0


def test_hard_negatives_build_depends_on_its_first_stage_and_draws_from_it(tmp_path):
    """`hard_negatives` makes the build a dependent of its retriever's stage, enters the build's
    hash only when set, and with share 1 every reranking negative is among the retriever's top `pool`
    for the example's history (popularity: the same top items for everyone, less what the user has)."""
    import numpy as np

    from instructrec.experiments.runner import RecipeRun
    from instructrec.instructions.builder import split_sequences
    from instructrec.training.data import load_instruction_records

    hard = {"retriever": "popularity", "share": 1.0, "pool": 12}
    raw = _variant(instructions__main__hard_negatives=hard, instructions__main__mix={"T0": 0, "T1": 0, "T2": 0, "cot": 0})
    run = RecipeRun(recipe_from_dict(raw), tmp_path / "run", lambda _: None, progress=False)
    _, folder = run.instructions("main")
    assert run.retrievers.stage("popularity").done()  # fitted, as a stage, for the build
    assert "hard_negatives" not in recipe_from_dict(copy.deepcopy(MINI)).instructions["main"].hashed()
    counts = np.asarray(run.retrievers("popularity").counts, dtype=np.float64)
    seqs = split_sequences(run.dataset, "train")[0]
    recs = load_instruction_records(folder)["train"]
    assert recs
    for rec in recs:
        user, target = run.dataset.user_index(rec["user_id"]), run.dataset.item_index(rec["item_id"])
        scores = counts.copy()
        scores[seqs[user]] = -np.inf
        scores[target] = -np.inf
        cutoff = np.sort(scores)[-12]  # the pool's weakest score (ties at it may go either way)
        negatives = [run.dataset.item_index(i) for j, i in enumerate(rec["candidate_items"]) if j != rec["target_index"]]
        assert len(negatives) == 9 and all(scores[i] >= cutoff for i in negatives)


def test_an_item_token_model_depends_on_its_retriever_and_is_evaluated_with_markers(tmp_path):
    """`item_tokens: sasrec` on a model (and `item_tokens: true` on its build): the model stage
    depends on SASRec's, carries SASRec's item embeddings as its soft tokens' table, and evaluates."""
    from safetensors.torch import load_file

    from instructrec.experiments.runner import RecipeRun
    from instructrec.model.item_markers import MARKER_RE
    from instructrec.training.data import load_instruction_records

    raw = _variant(instructions__main__item_tokens=True, models__tuned__item_tokens="sasrec",
                   instructions__main__mix={"T0": 0, "T1": 0, "T2": 0, "cot": 0})
    raw["experiments"][0]["methods"] = ["popularity", {"method": "llm:tuned", "name": "tuned"}]
    run = RecipeRun(recipe_from_dict(raw), tmp_path / "run", lambda _: None, progress=False)
    stage, folder = run.model("tuned")
    assert stage.settings["settings"]["item_tokens"] == run.retrievers.key("sasrec")
    assert run.retrievers.stage("sasrec").hash in stage.settings["deps"]
    recs = load_instruction_records(run.instructions("main")[1])["train"]
    assert recs and all(MARKER_RE.search(r["instruction"]) for r in recs)
    table = load_file(str(folder / "item_tokens.safetensors"))["table"]
    vectors = torch.as_tensor(run.retrievers("sasrec").item_vectors())
    assert table.shape == vectors.shape == (run.dataset.n_items, 16)
    assert torch.allclose(table, (vectors - vectors.mean(0)) / vectors.std(), atol=1e-5)
    summary = run_recipe(recipe_from_dict(raw), tmp_path / "run", progress=False)
    assert _status(summary)[("models", "tuned")] == "reused"
    tuned = next(r for r in summary["results"] if r["method"] == "tuned")
    assert tuned["users"] == 8 and 0.0 <= tuned["HR@1"] <= 1.0
