"""First-stage retrievers and classical baselines behind one protocol (see `base`)."""

from instructrec.candidates.base import REGISTRY, Retriever, create_retriever, load_retriever

__all__ = ["REGISTRY", "Retriever", "create_retriever", "load_retriever"]
