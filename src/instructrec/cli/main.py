"""Entry point of the `instructrec` console command."""

from __future__ import annotations

import sys

import typer

from instructrec.cli import data as data_cli
from instructrec.cli import evaluate as evaluate_cli
from instructrec.cli import instructions as instructions_cli
from instructrec.cli import model as model_cli
from instructrec.cli.common import err_console, setup_logging
from instructrec.cli.quickstart import quickstart, run_cmd
from instructrec.cli.serve import recommend, serve
from instructrec.errors import InstructRecError

app = typer.Typer(
    help="InstructRec: recommendation as instruction following with instruction-tuned LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(evaluate_cli.retrieve_app, name="retrieve")
app.command("evaluate")(evaluate_cli.evaluate_cmd)
app.add_typer(instructions_cli.app, name="instructions")
app.command("quickstart")(quickstart)
app.command("run")(run_cmd)
app.command("train")(model_cli.train_cmd)
app.command("score")(model_cli.score_cmd)
app.command("recommend")(recommend)
app.command("serve")(serve)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    setup_logging(verbose)


def main() -> None:
    """Run the CLI; a user-caused error becomes one line on stderr and exit status 2."""
    try:
        app()
    except InstructRecError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
