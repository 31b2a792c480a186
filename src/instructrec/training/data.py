"""Read instruction data (JSONL / Parquet lines of `Example.to_record()`) and tokenize it.

Only `instruction`, `target` and `split` are needed for training; reranking (T3) records also
carry `candidates` and `target_index`, which the validation HR@1 uses.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from instructrec.errors import DataError
from instructrec.model.prompt import PromptEncoder

log = logging.getLogger(__name__)

REQUIRED = ("instruction", "target")
SPLIT_ALIASES = {"validation": "valid", "val": "valid", "dev": "valid"}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno} is not a JSON object; each line must be one record")
            records.append(rec)
    return records


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"instruction data {path} does not exist; pass a folder or a .jsonl/.parquet file")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".parquet") and not p.name.startswith("."))
    if not files:
        raise DataError(f"{path} holds no .jsonl or .parquet instruction files; run the instruction builder first")
    return files


def load_instruction_records(path: str | Path, default_split: str = "train") -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their `split` field (`train`, `valid`, `test`; missing -> `default_split`)."""
    by_split: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for file in _files(Path(path)):
        if file.suffix == ".parquet":
            try:
                recs = pq.read_table(file).to_pylist()
            except Exception as exc:
                raise DataError(f"{file} is not a readable Parquet file ({exc})") from exc
        else:
            recs = _read_jsonl(file)
        for i, rec in enumerate(recs):
            missing = [k for k in REQUIRED if not isinstance(rec.get(k), str)]
            if missing:
                raise DataError(f"{file} record {i} lacks text field(s) {missing}; records need 'instruction' and 'target'")
            split = str(rec.get("split") or default_split)
            by_split[SPLIT_ALIASES.get(split, split)].append(rec)
    log.info("instruction data %s: %s", path, {k: len(v) for k, v in by_split.items()})
    return dict(by_split)


def reranking_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records usable for HR@1: candidates present and a valid `target_index`."""
    out = []
    for rec in records:
        cands = rec.get("candidates") or []
        idx = int(rec.get("target_index", -1) if rec.get("target_index") is not None else -1)
        if len(cands) >= 2 and 0 <= idx < len(cands):
            out.append(rec)
    return out


def is_listwise(rec: dict[str, Any]) -> bool:
    """A listwise record: letter-labelled candidates and the target's letter as the answer."""
    return rec.get("candidate_labels") == "letters" and bool(reranking_records([rec]))


def records_head(records: list[dict[str, Any]]) -> str:
    """The ranking head training on `records` produces: `listwise` when they hold listwise records."""
    return "listwise" if any(is_listwise(r) for r in records) else "title"


def records_collaborative(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """The first-stage input the records' instructions carry (`collaborative` of the builder's
    records: `notes`, `order`), sorted."""
    return tuple(sorted({c for r in records for c in (r.get("collaborative") or ())}))


def records_render(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The prompt budget the records' instructions were cut to (`render` of the builder's records;
    `RenderSettings.budget`), empty for the default one. Records cut to different budgets are
    refused: the model could record only one, and its reranker would cut the others differently."""
    budgets = {json.dumps(r.get("render") or {}, sort_keys=True) for r in records}
    if len(budgets) > 1:
        raise DataError(f"the training instructions were built with {len(budgets)} different prompt budgets "
                        f"({', '.join(sorted(budgets))}); build them with one (history_items, title_chars, ...).")
    return json.loads(budgets.pop()) if budgets else {}


def record_prior(rec: dict[str, Any]) -> list[float] | None:
    """The candidates' z-scored first-stage scores a record was built with (`candidate_prior`), or None."""
    prior = (rec.get("meta") or {}).get("prior")
    return [float(z) for z in prior] if prior is not None else None


def fit_prior_weight(records: list[dict[str, Any]]) -> float:
    """The weight w >= 0 under which softmax(w * prior) best predicts the targets of the records'
    lists (mean log-likelihood, all candidates): the prior's own calibration, which the model's
    scores are then learned on top of. 0 without records that carry a prior."""
    lists = [(np.asarray(p), int(r["target_index"])) for r in records
             if (p := record_prior(r)) is not None and int(r.get("target_index", -1)) >= 0]
    if not lists:
        return 0.0
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    def nll(w: float) -> float:
        return float(np.mean([logsumexp(w * z) - w * z[t] for z, t in lists]))

    return round(float(minimize_scalar(nll, bounds=(0.0, 20.0), method="bounded").x), 4)


def sampled_negatives(rec: dict[str, Any], negatives: int | None) -> list[int]:
    """Positions of the other candidates of a reranking record that its softmax keeps: all of them,
    or `negatives` drawn uniformly, seeded by the instruction text (the same draw on every run and
    resume). Drawn, not the first ones: with the first N the target was the last of its kept list
    whenever it was listed after them (70 % of 4-item lists), and the model learned that position
    instead of the titles (validation HR@1 over 4 kept 0.75, over all 10 candidates 0.08)."""
    others = [j for j in range(len(rec["candidates"])) if j != int(rec["target_index"])]
    if negatives is None or negatives >= len(others):
        return others
    rng = random.Random(zlib.crc32(rec["instruction"].encode("utf-8")))
    return sorted(rng.sample(others, negatives))


def tokenize_records(records: list[dict[str, Any]], encoder: PromptEncoder,
                     objective: str = "likelihood", negatives: int | None = None) -> list[dict[str, Any]]:
    """Features for training: `input_ids`, `labels` (-100 on the prompt for causal models) and
    `length` (for length-grouped batching). Listwise records also get `choices`, the token ids of
    their candidates' letters: their loss is cross-entropy over those logits only (`loss.py`).
    With a `softmax` objective (`TrainSettings.objective`) reranking records with numbered
    candidates also get `candidate_ids` (each candidate title's answer tokens), `target_index` and
    `prompt_length` (and `candidate_prior` when built with a first-stage prior); with `softmax` alone
    their labels are all -100 (no likelihood term). `negatives`
    keeps the target and that many other candidates of each list (`sampled_negatives`; unset: all)."""
    softmax = "softmax" in objective
    if softmax and encoder.kind != "causal":
        raise DataError(f"the {objective!r} objective trains causal models only; use `likelihood` for a seq2seq model")
    feats = []
    letters: list[int] | None = None
    for rec in records:
        prompt = encoder.prompt_ids(rec["instruction"])
        if is_listwise(rec):
            if encoder.kind != "causal":
                raise DataError("listwise records train causal models only; build the instructions with "
                                "numbered candidates for a seq2seq model")
            from instructrec.model.listwise import label_token_ids

            letters = letters or label_token_ids(encoder)
            choices = letters[: len(rec["candidates"])]
            target = choices[int(rec["target_index"])]
            feats.append({"input_ids": [*prompt, target], "labels": [-100] * len(prompt) + [target],
                          "choices": choices, "length": len(prompt) + 1})
            continue
        answer = encoder.answer_ids(rec["target"])
        if encoder.kind == "causal":
            ids = prompt + answer
            labels = [-100] * len(prompt) + answer
        else:
            ids, labels = prompt, answer
        feat = {"input_ids": ids, "labels": labels, "length": len(ids) + (0 if encoder.kind == "causal" else len(answer))}
        if softmax and reranking_records([rec]):
            target = int(rec["target_index"])
            kept = sorted([target, *sampled_negatives(rec, negatives)])
            feat.update(candidate_ids=[encoder.answer_ids(rec["candidates"][j]) for j in kept],
                        target_index=kept.index(target), prompt_length=len(prompt))
            prior = record_prior(rec)
            if prior is not None:  # the first stage's prior the objective adds (`TrainSettings.prior_weight`)
                feat["candidate_prior"] = [prior[j] for j in kept]
            if objective == "softmax":
                feat["labels"] = [-100] * len(ids)
        feats.append(feat)
    return feats
