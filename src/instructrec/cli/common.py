"""Shared CLI helpers: the console, logging setup and tables."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """Rich log lines on stderr; library chatter (weight-loading bars, deprecation notices) only with -v."""
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
        # Environment variables rather than transformers' setters: importing transformers here
        # would cost every command (even --help) about a second; it reads these when imported.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        if "transformers" in sys.modules:  # already imported (tests, library use): set it directly
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


def stats_table(title: str, values: Mapping[str, object]) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in values.items():
        shown = f"{value:,.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        table.add_row(key, shown)
    return table
