"""``neurodecode train CONFIG [--key=value ...]``: run a LightningCLI pipeline config.

The command dispatches on ``--task``; every task maps to a function in the method's own module,
so another training task plugs in by adding one entry to ``TASKS``. The default
("classification") runs LightningCLI's ``fit`` on any ``class_path`` model/data pair, which also
serves configs of other LightningModules.
"""

from pathlib import Path

import typer

from ..utils import InputFileError, UsageError


def _lightning_fit(config, overrides):
    from ..training.decoding import run_lightning_cli

    run_lightning_cli(config, overrides)
    return 0


# task name -> function(config path, list of override strings) returning an exit code.
TASKS = {"classification": _lightning_fit}


def register(app):
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def train(
        ctx: typer.Context,
        config: Path = typer.Argument(..., help="Pipeline YAML (e.g. pipelines/dbconformer_mi.yaml)."),
        task: str = typer.Option("classification", "--task", help=f"Training task: {', '.join(TASKS)}."),
    ):
        """Train from a pipeline config; extra --section.key=value options override it (LightningCLI)."""
        if task not in TASKS:
            raise UsageError(f"Invalid value for '--task'. Allowed values are {', '.join(map(repr, TASKS))}, but got {task!r} instead.")
        if not config.is_file():
            raise InputFileError(f"{config}: no such pipeline config (YAML).")
        code = TASKS[task](config, list(ctx.args))
        if code:
            raise typer.Exit(code)
