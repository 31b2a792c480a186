"""Kill -9 at any point, lose nothing: `data prepare`, `instructions build`, `train`, `evaluate` and a
recipe run, each SIGKILLed at >= 5 seeded kill points (`tests/crash.py`), then resumed: the outputs
equal an uninterrupted run's, and after every kill nothing half-written loads as complete.

Set INSTRUCTREC_CRASH_LOG=FILE to record every kill point (benchmarks/RESULTS.md, "Crash resume").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from crash import KillPoint, child_env, instructrec, kill_and_resume, run_to_end, tree_bytes
from instructrec.data.dataset import DataError, Dataset

CREATED = re.compile(rb'"created": "[^"]*"')


def _normalise(root: Path):
    """Bytes as compared: this run's folder, the dataset's creation time and stage timings blanked out,
    peft's unordered target_modules sorted."""
    def ignore(rel: str, data: bytes) -> bytes:
        data = data.replace(str(root).encode(), b"<ROOT>")
        if rel.endswith("adapter_config.json"):  # peft writes target_modules, a set, in hash order
            doc = json.loads(data)
            if isinstance(doc.get("target_modules"), list):
                doc["target_modules"] = sorted(doc["target_modules"])
            return json.dumps(doc, sort_keys=True).encode()
        if rel.endswith("stage.json"):  # a stage record holds the seconds it took
            doc = json.loads(data)
            doc.pop("seconds", None)
            return json.dumps(doc, sort_keys=True).encode()
        return CREATED.sub(b'"created": ""', data) if rel.endswith("manifest.json") else data
    return ignore


def _assert_same_tree(got: Path, want: Path, skip=lambda rel: False) -> None:
    a = {k: v for k, v in tree_bytes(got, _normalise(got.parent)).items() if not skip(k)}
    b = {k: v for k, v in tree_bytes(want, _normalise(want.parent)).items() if not skip(k)}
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], f"{rel} differs"


def _no_temporaries(root: Path) -> None:
    left = [str(p.relative_to(root)) for p in root.rglob("*") if re.search(r"\.(tmp|old)-\d+", p.name)]
    assert not left, f"temporaries left behind: {left}"


# -- data prepare -----------------------------------------------------------------------------------

def test_data_prepare_survives_sigkill(tmp_path):
    env = child_env()
    cmd = lambda root: instructrec("data", "prepare", "--source", "movielens", "--out", str(root / "ml"))  # noqa: E731
    ref = tmp_path / "ref"
    seconds = run_to_end(cmd(ref), env)
    want = Dataset.load(ref / "ml")

    def check(root: Path) -> None:
        try:
            ds = Dataset.load(root / "ml")
        except DataError:
            assert not (root / "ml").exists(), "a dataset folder that does not load is visible"
            return
        pd.testing.assert_frame_equal(ds.interactions, want.interactions)  # present = complete
        pd.testing.assert_frame_equal(ds.items, want.items)

    # the start, the temporary folder being filled, just after the rename, then while replacing the
    # finished dataset (the last two parquet files and the manifest take less than a poll interval)
    points = [KillPoint(None, 0.6), KillPoint(".ml.tmp-*", 0.05), KillPoint(".ml.tmp-*/items.parquet", 0.0),
              KillPoint(".ml.tmp-*/interactions.parquet", 0.0), KillPoint("ml", 0.0), KillPoint(".ml.tmp-*", 0.1)]
    crash = tmp_path / "crash"
    result = kill_and_resume("data prepare", cmd(crash), watch=crash, points=points, env=env,
                             reference_seconds=seconds, check=check, seed=1)
    assert result.killed >= 5, json.dumps(result.record(), indent=1)
    _assert_same_tree(crash / "ml", ref / "ml")
    _no_temporaries(crash)


# -- instructions build -----------------------------------------------------------------------------

def test_instructions_build_survives_sigkill(tmp_path):
    env = child_env()

    def cmd(root: Path) -> list[str]:
        return instructrec("instructions", "build", "--data", "movielens", "--out", str(root / "ins"),
                           "--max-examples", "12000", "--shard-size", "500", "--seed", "3")

    ref = tmp_path / "ref"
    seconds = run_to_end(cmd(ref), env)
    want = tree_bytes(ref / "ins")

    def check(root: Path) -> None:
        out = root / "ins"
        if not out.exists():
            return
        state = json.loads((out / "build.json").read_text()) if (out / "build.json").exists() else {}
        got = tree_bytes(out)
        for rel, data in got.items():
            if re.fullmatch(r"shard-\d+\.jsonl|\.shard-\d+\.stats\.json|stats\.json", rel):
                assert data == want[rel], f"{rel} is visible but not the finished file"
        if state.get("complete"):
            assert set(want) <= set(got), "build.json says complete with files missing"

    # 24 shards; each point waits for a shard later than the one the previous kill stopped at, so a
    # loaded machine (slower or faster phases) still hits every point
    points = [KillPoint(None, 0.1), KillPoint("ins/build.json", 0.0), KillPoint("ins/.shard-00003.stats.json", 0.0),
              KillPoint("ins/shard-00008.jsonl", 0.0), KillPoint("ins/.shard-00013.stats.json", 0.0),
              KillPoint("ins/shard-00018.jsonl", 0.0), KillPoint("ins/stats.json", 0.0)]
    crash = tmp_path / "crash"
    result = kill_and_resume("instructions build", cmd(crash), watch=crash, points=points, env=env,
                             reference_seconds=seconds, check=check, seed=2)
    assert result.killed >= 5, json.dumps(result.record(), indent=1)
    assert tree_bytes(crash / "ins") == want
    assert json.loads((crash / "ins" / "build.json").read_text())["complete"] is True
    _no_temporaries(crash)


# -- train ------------------------------------------------------------------------------------------

def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_train_survives_sigkill(tmp_path, tiny_llama_dir, tiny_instructions_dir):
    from instructrec.errors import ModelError
    from instructrec.model.backend import UNFINISHED_FILE, load_model

    env = child_env()

    def cmd(root: Path) -> list[str]:
        return instructrec("train", "--model", str(tiny_llama_dir), "--instructions", str(tiny_instructions_dir),
                           "--out", str(root / "tr"), "--lora", "--steps", "12", "--eval-steps", "3",
                           "--batch-size", "8", "--max-eval-examples", "8", "--logging-steps", "1",
                           "--save-total-limit", "10")

    ref = tmp_path / "ref"
    seconds = run_to_end(cmd(ref), env)

    def check(root: Path) -> None:
        out = root / "tr"
        if not out.exists():
            return
        try:
            load_model(out, device="cpu")
        except ModelError as exc:  # not loadable: fine, unless it was finished
            assert (out / UNFINISHED_FILE).exists() and "not finished" in str(exc), exc
            return
        assert (out / "instructrec.json").exists(), "a training output without instructrec.json loads"
        got = _tensors(out / "adapter_model.safetensors")  # loadable = finished: the reference's weights
        want = _tensors(ref / "tr" / "adapter_model.safetensors")
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in got)

    points = [KillPoint(None, 0.6), KillPoint("tr/checkpoint-3", 0.0),
              KillPoint("tr/checkpoint-6/adapter_model.safetensors", 0.0),
              KillPoint("tr/checkpoint-9/trainer_state.json", 0.05), KillPoint("tr/checkpoint-12", 0.0),
              KillPoint("tr/adapter_config.json", 0.0)]
    crash = tmp_path / "crash"
    result = kill_and_resume("train", cmd(crash), watch=crash, points=points, env=env,
                             reference_seconds=seconds, check=check, seed=3)
    assert result.killed >= 5, json.dumps(result.record(), indent=1)
    out, want = crash / "tr", ref / "tr"
    assert not (out / UNFINISHED_FILE).exists()
    for rel in ("adapter_model.safetensors", "checkpoint-12/adapter_model.safetensors",
                "checkpoint-6/adapter_model.safetensors"):
        got, exp = _tensors(out / rel), _tensors(want / rel)
        assert got.keys() == exp.keys()
        for k in got:
            np.testing.assert_array_equal(got[k], exp[k], err_msg=f"{rel}:{k}")
    meta, ref_meta = (json.loads((d / "instructrec.json").read_text()) for d in (out, want))
    for doc in (meta, ref_meta):
        doc["settings"].pop("out_dir")
    assert meta == ref_meta
    _no_temporaries(crash)


# -- evaluate ---------------------------------------------------------------------------------------

def test_evaluate_survives_sigkill(tmp_path, synthetic_seq):
    from instructrec.candidates.base import load_retriever

    env = child_env()
    data = synthetic_seq.save(tmp_path / "data")

    def cmd(root: Path) -> list[str]:
        return instructrec("evaluate", "--data", str(data), "--method", "popularity,bm25,sasrec", "--users", "200",
                           "--models", str(root / "models"), "--out", str(root / "out"), "--seed", "4",
                           "--param", "sasrec.epochs=8", "--param", "sasrec.hidden=16", "--param", "sasrec.patience=20",
                           "--param", "sasrec.progress=false")

    ref = tmp_path / "ref"
    seconds = run_to_end(cmd(ref), env)
    want = json.loads((ref / "out" / "results.json").read_text())

    def check(root: Path) -> None:
        for folder in (root / "models").glob("[!.]*"):  # a visible retriever folder is a complete one
            load_retriever(folder)
        if (root / "out" / "results.json").exists():
            got = json.loads((root / "out" / "results.json").read_text())
            assert [r["metrics"] for r in got["results"]] == [r["metrics"] for r in want["results"]]

    # the timed kill goes last: first, on a loaded box it landed after popularity's fit, whose file
    # point then never fired (a .ci/run, 3 of 7 kills); the file points fire in stage order
    points = [KillPoint("models/popularity", 0.0), KillPoint("models/.sasrec.checkpoint.pt", 0.2),
              KillPoint("models/..sasrec.checkpoint.pt.tmp-*", 0.0), KillPoint("models/.sasrec.tmp-*", 0.0),
              KillPoint("out/.per_user.parquet.tmp-*", 0.0), KillPoint("out/results.md", 0.0), KillPoint(None, 0.6)]
    crash = tmp_path / "crash"
    result = kill_and_resume("evaluate", cmd(crash), watch=crash, points=points, env=env,
                             reference_seconds=seconds, check=check, seed=4)
    assert result.killed >= 5, json.dumps(result.record(), indent=1)
    got = json.loads((crash / "out" / "results.json").read_text())
    assert [(r["method"], r["metrics"]) for r in got["results"]] == [(r["method"], r["metrics"]) for r in want["results"]]
    pd.testing.assert_frame_equal(pd.read_parquet(crash / "out" / "per_user.parquet"),
                                  pd.read_parquet(ref / "out" / "per_user.parquet"))
    _assert_same_tree(crash / "models", ref / "models")  # the resumed SASRec has the same weights
    _no_temporaries(crash)


# -- a recipe run -----------------------------------------------------------------------------------

RECIPE = {
    "name": "crash",
    "data": "movielens",
    "seed": 0,
    "instructions": {"main": {"train_examples": 16, "valid_examples": 8}},
    "retrievers": {"sasrec": {"epochs": 2, "hidden": 16, "max_len": 10}},
    "models": {"tuned": {"base": "tiny", "instructions": "main",
                         "train": {"lora": True, "max_steps": 4, "batch_size": 4, "eval_steps": 2,
                                   "max_eval_examples": 4, "logging_steps": 1}}},
    "experiments": [{"name": "seq", "task": "seqrec", "candidates": "random:9", "users": 8, "valid_users": 8,
                     "methods": ["popularity", "sasrec", {"method": "llm:tuned", "name": "tuned"},
                                 {"method": "llm:tuned+sasrec", "name": "fused"}]}],
    "recommender": {"model": "tuned", "retriever": "sasrec", "text_retriever": None, "fusion_from": "fused"},
}


def _records(root: Path) -> dict[str, dict]:
    """Stage records present: record path -> record."""
    out = {}
    for rec in list(root.rglob("stage.json")) + list(root.rglob("*.stage.json")):
        out[str(rec.relative_to(root))] = json.loads(rec.read_text())
    return out


@pytest.mark.slow  # about 75 s here: eight launches of a recipe with every kind of stage
def test_recipe_run_survives_sigkill(tmp_path):
    from instructrec.candidates.base import load_retriever
    from instructrec.errors import ModelError
    from instructrec.eval.candidate_sets import CandidateSet
    from instructrec.model.backend import UNFINISHED_FILE, load_model
    from instructrec.recommender.recommender import read_settings

    env = child_env()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    cmd = lambda root: instructrec("run", str(recipe), "--out", str(root))  # noqa: E731
    ref = tmp_path / "ref"
    seconds = run_to_end(cmd(ref), env)
    want = json.loads((ref / "summary.json").read_text())
    seen_records: dict[str, dict] = {}

    def check(root: Path) -> None:
        for rel, rec in _records(root).items():  # every recorded stage's output is complete
            assert rec["complete"] is True
            path = root / rel
            out = path.parent if path.name == "stage.json" else path.with_name(path.name[: -len(".stage.json")])
            kind = rec["kind"]
            if kind == "data":
                Dataset.load(out)
            elif kind == "instructions":
                assert all(json.loads((out / s / "build.json").read_text())["complete"] for s in ("train", "valid"))
            elif kind == "retrievers":
                load_retriever(out)
            elif kind == "models" and (out / "adapter_config.json").exists():
                load_model(out, device="cpu")
            elif kind == "candidates":
                CandidateSet.load(out)
            elif kind in ("fusion", "results"):
                json.loads(out.read_text())
            elif kind == "recommender":
                read_settings(out)
                Dataset.load(out / "data")
        for marker in root.glob(f"models/*/{UNFINISHED_FILE}"):  # a model being trained never loads
            with pytest.raises(ModelError, match="not finished"):
                load_model(marker.parent, device="cpu")
        seen_records.clear()
        seen_records.update(_records(root))

    # The timed kills go first (early: data and retrievers) and last: a timed kill early in the list
    # lands at a fraction of the reference run's time, and on a loaded box that fraction can already be
    # past the file points that follow it (each of which then finds its stage done and never fires).
    points = [KillPoint(None, 0.15), KillPoint("instructions/*/train/shard-00000.jsonl", 0.0),
              KillPoint("models/tuned-*/checkpoint-2", 0.0), KillPoint("models/tuned-*/adapter_config.json", 0.0),
              KillPoint("results/seq/*.json", 0.0), KillPoint(".recommender.tmp-*", 0.0),
              KillPoint("reports/seq/results.json", 0.0), KillPoint(None, 0.6)]
    crash = tmp_path / "crash"
    result = kill_and_resume("recipe run", cmd(crash), watch=crash, points=points, env=env,
                             reference_seconds=seconds, check=check, seed=5)
    assert result.killed >= 5, json.dumps(result.record(), indent=1)
    got = json.loads((crash / "summary.json").read_text())
    assert got["results"] == want["results"] and got["fusion_weights"] == want["fusion_weights"]
    # a stage is reused only if its record was there before the last run: none was taken half-done
    recorded = {rec["hash"] for rec in seen_records.values()}
    assert {s["hash"] for s in got["stages"] if s["status"] == "reused"} <= recorded
    _assert_same_tree(crash / "recommender", ref / "recommender", skip=lambda rel: rel == "model/README.md")
    _no_temporaries(crash)
