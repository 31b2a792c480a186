"""The text side of collaborative soft tokens (`model.item_tokens`): the marker the renderer writes
after an item's title, and its encoding into one token id. Kept free of torch: the instruction
builder and the CLI import it without loading a model."""

from __future__ import annotations

import re
from collections.abc import Callable

from instructrec.errors import ModelError

MARKER = "<|item:{index}|>"
MARKER_RE = re.compile(r"<\|item:(\d+)\|>")


def marker(index: int) -> str:
    """The text marker of item `index` (its soft token once encoded)."""
    return MARKER.format(index=int(index))


def encode(tokenize: Callable[[str], list[int]], text: str, offset: int | None, rows: int | None = None) -> list[int]:
    """Token ids of `text` with each item marker as one id (`offset + index`); `tokenize(str) -> ids`
    encodes the text between markers. Without an `offset` markers are plain text."""
    if offset is None or "<|item:" not in text:
        return list(tokenize(text))
    ids: list[int] = []
    start = 0
    for match in MARKER_RE.finditer(text):
        if match.start() > start:
            ids += tokenize(text[start : match.start()])
        index = int(match.group(1))
        if rows is not None and index >= rows:
            raise ModelError(f"item {index} has no soft token: the model's item table has {rows} items. "
                             "Serve the model with the dataset it was tuned on.")
        ids.append(offset + index)
        start = match.end()
    if start < len(text):
        ids += tokenize(text[start:])
    return ids
