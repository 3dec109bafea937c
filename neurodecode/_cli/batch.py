"""``neurodecode batch INPUT --out DERIV``: clean and check a whole dataset on Dask, resumably."""

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..utils import NeurodecodeError


def register(app):
    @app.command()
    def batch(
        input_path: Path = typer.Argument(..., metavar="INPUT", help="BIDS dataset, folder of recordings, or one file."),
        out: Path = typer.Option(..., "--out", help="Derivatives folder (BIDS derivatives); never inside INPUT."),
        steps: Optional[str] = typer.Option(None, "--steps", help="Comma-separated steps: clean,qc (default: config)."),
        config: Optional[Path] = typer.Option(None, "--config", help="batch.yaml with step settings."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Local worker processes (default 2)."),
        scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of an existing Dask scheduler."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Per-worker memory limit, e.g. 3GB."),
        on_error: Optional[str] = typer.Option(None, "--on-error", help="continue (default) or abort."),
        dry_run: bool = typer.Option(False, "--dry-run", help="List what would run; write nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (summary and rows) on stdout."),
    ):
        """Run cleaning and QC over every recording; write BIDS derivatives and a status table.

        Exit code 0 when every file succeeded (or was already done), 1 when any failed,
        2 for a usage or configuration error. A rerun skips what is done and verified.
        """
        from ..batch import run_batch

        bar = None if as_json else _Progress()
        try:
            result = run_batch(
                input_path, out, steps=steps, config=config, workers=workers, scheduler=scheduler,
                memory_limit=memory_limit, on_error=on_error, dry_run=dry_run,
                progress=None if bar is None else bar.update,
            )
        finally:
            if bar is not None:
                bar.close()
        if as_json:
            typer.echo(json.dumps({"summary": result.summary, "rows": result.rows}, indent=1))
        else:
            s = result.summary
            counts = ", ".join(f"{v} {k}" for k, v in sorted(s.get("counts", {}).items()))
            if dry_run:
                for r in result.rows:
                    typer.echo(f"{r['status']:8s} {r['step']:6s} {r['file']}")
            typer.echo(f"{s['n_recordings']} recording(s), steps {','.join(s['steps'])}: {counts} "
                       f"in {s['wall_s']:.1f} s.", err=True)
            if s.get("status_csv"):
                typer.echo(f"Status table: {s['status_csv']}", err=True)
            for f in s.get("files_failed", []):
                err = next(r for r in result.rows if r["file"] == f and r["status"] == "failed")
                typer.echo(f"FAILED {f} [{err['step']}] {err['error_class']}: {err['error_message']}", err=True)
        if result.exit_code:
            # A NeurodecodeError (not typer.Exit) so that neurodecode.cli.main turns it into exit code 1.
            raise _FilesFailed(f"{len(result.summary.get('files_failed', []))} file(s) failed; see the status table.")


class _FilesFailed(NeurodecodeError):
    exit_code = 1


class _Progress:
    """A progress bar on stderr plus one line per finished file."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=True)
        self.task = None

    def update(self, rows, n_done, n_total):
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("batch", total=n_total)
        status = "failed" if any(r["status"] == "failed" for r in rows) else (
            "cached" if all(r["status"] == "cached" for r in rows) else "done")
        secs = sum(r["duration_s"] for r in rows)
        self.progress.console.print(f"[{n_done}/{n_total}] {status:6s} {rows[0]['file']} ({secs:.1f} s)",
                                    highlight=False, markup=False)
        self.progress.update(self.task, completed=n_done)

    def close(self):
        if self.task is not None:
            self.progress.stop()
        sys.stderr.flush()
