"""The ``neurodecode`` command line.

Each capability keeps its subcommand in ``neurodecode/_cli/<name>.py``, which defines
``register(app)``; this file only lists them, so that adding a command touches one line
and ``neurodecode --help`` does not import torch.
"""

import importlib
import sys

import typer

from .utils import NeurodecodeError

app = typer.Typer(
    name="neurodecode",
    help="Read, clean, check, decode and visualise EEG, MEG and fMRI recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root():
    """Read, clean, check, decode and visualise EEG, MEG and fMRI recordings."""


# Module names under neurodecode._cli; a module not present yet is skipped.
_COMMAND_MODULES = (
    "info",
    "clean",
    "qc",
    "synth",
    "dataset",
    "train",
    "evaluate",
    "retrieval",
    "reconstruct",
    "batch",
)

for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"{__package__}._cli.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"{__package__}._cli.{_name}":
            raise
        continue
    _mod.register(app)


def main(argv=None):
    """Run the CLI; user mistakes print one sentence and exit 1 (input) or 2 (usage)."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except NeurodecodeError as err:
        typer.echo(f"Error: {err}", err=True)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except Exception as err:
        # typer vendors click; its usage errors have show() and their own exit code (2).
        if hasattr(err, "show") and hasattr(err, "exit_code"):
            err.show()
            sys.exit(err.exit_code)
        if type(err).__name__ == "Exit" and hasattr(err, "exit_code"):
            sys.exit(err.exit_code)
        raise
    # With standalone_mode=False click returns the code of a typer.Exit instead of raising.
    sys.exit(rc if isinstance(rc, int) else 0)
