"""Dynamic padding for instruction batches (pad to the longest in the batch, not to a fixed length).

Hand-written rather than `DataCollatorForSeq2Seq` because causal and seq2seq features share one
format here (`input_ids`, `labels` with -100 on the prompt) and the labels must stay aligned with
`input_ids` for causal models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


@dataclass
class InstructionCollator:
    """Pads `input_ids` (with `pad_id`) and `labels` (with -100) to the batch's longest row."""

    pad_id: int
    """Token id used for padding inputs."""
    kind: str
    """`causal` (labels aligned with inputs) or `seq2seq` (labels are the decoder targets)."""
    pad_to_multiple_of: int | None = None
    """Round padded lengths up (8 helps tensor cores on GPUs)."""
    max_length: int | None = None
    """When set, pad every batch to this length instead (the static-padding baseline)."""

    def _width(self, lengths: list[int]) -> int:
        if self.max_length is not None:
            return self.max_length
        width = max(lengths)
        m = self.pad_to_multiple_of
        return width if not m else (width + m - 1) // m * m

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = self._width([len(f["input_ids"]) for f in features])
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        lwidth = width if self.kind == "causal" else self._width([len(f["labels"]) for f in features])
        labels = torch.full((len(features), lwidth), IGNORE, dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            mask[i, :n] = 1
            labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if any("choices" in f for f in features):  # listwise rows: their candidates' label tokens, -1 padded
            width = max(len(f.get("choices", ())) for f in features)
            choices = torch.full((len(features), width), -1, dtype=torch.long)
            for i, f in enumerate(features):
                choices[i, : len(f.get("choices", ()))] = torch.tensor(f.get("choices", []), dtype=torch.long)
            batch["choices"] = choices
        if any("candidate_ids" in f for f in features):  # candidates-softmax rows (`TrainSettings.objective`)
            batch["candidate_ids"] = [f.get("candidate_ids", []) for f in features]
            batch["target_index"] = torch.tensor([f.get("target_index", -1) for f in features], dtype=torch.long)
            batch["prompt_length"] = torch.tensor([f.get("prompt_length", 0) for f in features], dtype=torch.long)
            if any("candidate_prior" in f for f in features):  # a first-stage prior per candidate (0: none)
                batch["candidate_prior"] = [f.get("candidate_prior") or [0.0] * len(f.get("candidate_ids", []))
                                            for f in features]
        return batch
