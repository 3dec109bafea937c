"""``neurodecode evaluate``: benchmark decoders under a leakage-free protocol.

The command dispatches on ``--task``; each task is one function living with its method, so
another task (e.g. retrieval) plugs in by adding one entry to ``TASKS``.
"""

from pathlib import Path
from typing import Optional

import typer

from ..utils import UsageError


def _classification(opts):
    from ..training.evaluation import evaluate_classification

    if opts["extra_args"]:
        raise UsageError(f"No such option(s) for --task classification: {' '.join(opts['extra_args'])}.")
    models = [m.strip() for m in (opts["models"] or "").split(",") if m.strip()]
    if not models:
        raise UsageError("Invalid value for '--models': give a comma-separated list such as 'dbconformer,csp_lda'.")
    if opts["protocol"] is None:
        raise UsageError("Missing option '--protocol' (within-chrono, within-5fold, loso or holdout).")
    subjects = [s.strip() for s in opts["subjects"].split(",")] if opts["subjects"] else None
    recipe = {k: opts[k] for k in ("l_freq", "h_freq", "sfreq", "tmin", "tmax", "channels") if opts[k] is not None}
    res = evaluate_classification(
        opts["protocol"], models, data_dir=opts["data_dir"], test_data_dir=opts["test_data_dir"], out=opts["out"],
        subjects=subjects, task=opts["mi_task"], epochs=opts["epochs"], batch_size=opts["batch_size"],
        lr=opts["lr"], seed=opts["seed"], euclidean_alignment=opts["euclidean_alignment"], recipe=recipe,
        progress=lambda msg: typer.echo(f"  {msg}", err=True))
    typer.echo(res["markdown"])
    typer.echo(f"\nResults in {opts['out']} (folds.csv, summary.csv, paired_tests.csv, summary.md, accuracy.png).")
    for p in res["problems"]:
        typer.echo(f"warning: {p}", err=True)
    return 1 if res["problems"] else 0


def _retrieval(opts):
    """``--task retrieval``: the ``retrieve`` command's options (``--method``, ``--data``, ``--blur``,
    ``--snr``, ...) follow on the same line; ``--epochs``, ``--seed`` and ``--out`` (a folder: the
    scores go to ``OUT/retrieval.json``) are shared with the classification task."""
    from . import retrieval

    sub = typer.Typer(add_completion=False)
    retrieval.register(sub)
    out = Path(opts["out"])
    out.mkdir(parents=True, exist_ok=True)
    args = list(opts["extra_args"]) + ["--epochs", str(opts["epochs"]), "--seed", str(opts["seed"]),
                                       "--out", str(out / "retrieval.json"), "--overwrite"]
    rc = sub(args=args, standalone_mode=False)
    return rc if isinstance(rc, int) else 0


# task name -> function(options dict) returning an exit code. The dict holds every option below plus
# ``extra_args``: the unrecognised command-line words, for a task that parses its own options.
TASKS = {"classification": _classification, "retrieval": _retrieval}


def register(app):
    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def evaluate(
        ctx: typer.Context,
        task: str = typer.Option("classification", "--task", help=f"What to evaluate: {', '.join(TASKS)}."),
        protocol: Optional[str] = typer.Option(None, help="within-chrono | within-5fold | loso | holdout."),
        models: str = typer.Option("dbconformer,eegconformer,eegnet,shallow,csp_lda,ts_lr",
                                   help="Comma-separated decoder names."),
        data_dir: Optional[Path] = typer.Option(None, help="eegmmidb-layout folder (default $NEURODECODE_DATA/eegmmidb)."),
        test_data_dir: Optional[Path] = typer.Option(None, help="Test folder for --protocol holdout."),
        out: Path = typer.Option(Path("results"), help="Results folder; finished folds found there are reused."),
        subjects: Optional[str] = typer.Option(None, help="Comma-separated subjects, e.g. S001,S002 (default all)."),
        mi_task: str = typer.Option("left_right", help="left_right (runs 4/8/12) or fists_feet (6/10/14)."),
        epochs: int = typer.Option(10, min=1, help="Fixed number of training epochs (no early stopping on test)."),
        batch_size: int = typer.Option(32, min=1),
        lr: float = typer.Option(1e-3, min=0.0),
        seed: int = typer.Option(0),
        euclidean_alignment: bool = typer.Option(True, "--ea/--no-ea", help="Euclidean alignment (label-free)."),
        l_freq: Optional[float] = typer.Option(None, help="Band-pass low edge (default 8 Hz)."),
        h_freq: Optional[float] = typer.Option(None, help="Band-pass high edge (default 30 Hz)."),
        sfreq: Optional[float] = typer.Option(None, help="Resampling rate (default 64 Hz)."),
        tmin: Optional[float] = typer.Option(None, help="Window start after the cue (default 0.5 s)."),
        tmax: Optional[float] = typer.Option(None, help="Window end after the cue (default 3.5 s)."),
        channels: Optional[str] = typer.Option(None, help="motor (21 FC/C/CP electrodes, default) or all."),
    ):
        """Evaluate decoders under a protocol; write per-fold CSV, summary, paired tests and a plot."""
        import torch

        torch.set_num_threads(1)
        if task not in TASKS:
            raise UsageError(f"Invalid value for '--task'. Allowed values are {', '.join(map(repr, TASKS))}, but got {task!r} instead.")
        opts = {k: v for k, v in locals().items() if k not in ("ctx", "torch")}
        opts["extra_args"] = list(ctx.args)  # task-specific options (e.g. --k 5) that only that task reads
        code = TASKS[task](opts)
        if code:
            raise typer.Exit(code)
