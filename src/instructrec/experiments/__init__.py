"""Experiments as recipes: a validated YAML spec (`recipe`) run stage by stage (`runner`), every
stage keyed by the hash of its settings (`stages`)."""

from instructrec.experiments.recipe import Recipe, load_recipe
from instructrec.experiments.runner import run_recipe

__all__ = ["Recipe", "load_recipe", "run_recipe"]
