"""LLM backends (seq2seq and causal), the shared prompt format and fast candidate scoring."""

from instructrec.model.backend import LoadedModel, ModelKind, detect_kind, load_model
from instructrec.model.prompt import PromptEncoder, PromptSettings

__all__ = ["LoadedModel", "ModelKind", "PromptEncoder", "PromptSettings", "detect_kind", "load_model"]
