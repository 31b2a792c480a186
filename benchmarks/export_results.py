"""Export a recipe run's figures (`<out>/summary.json`) as machine-readable rows.

    .venv/bin/python benchmarks/export_results.py runs/games-table6/summary.json \
        --recipe benchmarks/recipes/games-table6.yaml --out benchmarks/results/games-table6-300u.json

Each row: experiment, method, method_spec, llm_input (`none`: no LLM; `text`: the LLM sees titles
and request only; `collaborative`: the LLM also reads a first stage's ranks, order or item embeddings
(soft tokens: a model with `item_tokens`) in its prompt, or its scores are a residual over a first
stage's (`@prior`, a model tuned with `candidate_prior`);
`fused`: LLM scores mixed with retrievers' after scoring), users, hr1, hr1_ci (95% half-width),
ndcg5, mrr, hr10 and ndcg10 (lists of more than 10 candidates), fusion_weight, recipe; plus the
run's paired differences.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instructrec.atomic import atomic_write
from instructrec.eval.methods import parse_method


def llm_input(spec: str, item_token_models: frozenset[str] = frozenset()) -> str:
    """The LLM's input of a method; `item_token_models`: the recipe's models tuned with item tokens."""
    method = parse_method(spec)
    if method.llm is None and not method.recommender:  # a retriever, or a stack of retrievers
        return "none"
    if any(role in ("note", "order", "prior") for _, role in method.fused) or method.llm in item_token_models:
        return "collaborative"
    if method.recommender or method.needs_fusion_weight:
        return "fused"
    return "text" if method.llm is not None else "none"


def export(summary: dict, recipe: str) -> dict:
    specs = {}
    for exp in summary["settings"]["experiments"]:
        for entry in exp["methods"]:
            text, name = (entry, entry) if isinstance(entry, str) else (entry["method"], entry["name"])
            specs[(exp["name"], name)] = text
    item_token_models = frozenset(name for name, m in summary["settings"].get("models", {}).items()
                                  if m.get("item_tokens"))
    rows = []
    for r in summary["results"]:
        spec = specs.get((r["experiment"], r["method"]), r["method"])
        rows.append({"experiment": r["experiment"], "method": r["method"], "method_spec": spec,
                     "llm_input": llm_input(spec, item_token_models), "candidates": r["candidates"], "users": r["users"],
                     "hr1": round(r["HR@1"], 4), "hr1_ci": round(r["HR@1_ci"], 4), "ndcg5": round(r["NDCG@5"], 4),
                     "mrr": round(r["MRR"], 4),
                     **{k.lower().replace("@", ""): round(r[k], 4) for k in ("HR@10", "NDCG@10") if k in r},
                     "fusion_weight": summary["fusion_weights"].get(r["experiment"], {}).get(r["method"]),
                     "recipe": recipe})
    paired = [{"experiment": exp, **p} for exp, rep in summary["reports"].items() for p in rep["paired"]]
    return {"rows": rows, "paired": paired, "stage_seconds": summary["stage_seconds"],
            "seconds": summary["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("summary", type=Path)
    ap.add_argument("--recipe", required=True, help="the recipe file that produced the run (recorded in every row)")
    ap.add_argument("--note", default="", help="how it was run (command, machine)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of --out from other experiments (one file for several runs)")
    a = ap.parse_args()
    doc = export(json.loads(a.summary.read_text()), a.recipe)
    doc["note"] = a.note
    if a.merge and a.out.exists():
        doc = merge(json.loads(a.out.read_text()), doc)
    atomic_write(a.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {len(doc['rows'])} rows to {a.out}")


def merge(old: dict, new: dict) -> dict:
    """`new`'s rows and paired differences, plus `old`'s that `new` did not measure again (a row is
    one method of one experiment; a paired difference one pair of one experiment)."""
    def row_key(r: dict) -> tuple:
        return r["experiment"], r["method"]

    def pair_key(p: dict) -> tuple:
        return p["experiment"], p.get("a"), p.get("b")

    rows = {row_key(r) for r in new["rows"]}
    pairs = {pair_key(p) for p in new["paired"]}
    notes = [n for n in (old.get("note", ""), new.get("note", "")) if n]
    return {"rows": [r for r in old["rows"] if row_key(r) not in rows] + new["rows"],
            "paired": [p for p in old.get("paired", []) if pair_key(p) not in pairs] + new["paired"],
            "stage_seconds": {**old.get("stage_seconds", {}), **new["stage_seconds"]},
            "seconds": old.get("seconds", 0) + new["seconds"], "note": " | ".join(dict.fromkeys(notes))}


if __name__ == "__main__":
    main()
