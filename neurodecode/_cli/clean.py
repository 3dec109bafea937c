"""``neurodecode clean IN -o OUT``: remove EMG/EOG artifacts and write a cleaned, annotated recording."""

import json
from pathlib import Path
from typing import Optional

import typer


def register(app):
    @app.command()
    def clean(
        path: Optional[Path] = typer.Argument(None, help="Recording to clean (any format read_raw reads)."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output file; EDF+ for .edf, else by extension."),
        method: str = typer.Option("atat", "--method", help="atat (learned denoiser), filter, or ica (ICA + ICLabel)."),
        artifacts: str = typer.Option("emg,eog", "--artifacts", help="Comma-separated: emg, eog."),
        report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML before/after report."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT (and REPORT) if they exist."),
        demo: bool = typer.Option(False, "--demo", help="Clean a built-in SIMULATED recording instead of PATH."),
        summary_json: Optional[Path] = typer.Option(None, "--summary", help="Write the cleaning summary as JSON."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        thorough: bool = typer.Option(
            False, "--thorough",
            help="atat: gate every window with the autoencoder instead of screening the recording first "
                 "(slower; removes more eye artifact on frontal channels, see docs/cleaning.md)."),
    ):
        """Clean a recording: a new file with artifacts removed, every change annotated (EDITED_*/BAD_*)."""
        from ..utils import UsageError

        if out is None:
            raise UsageError("Missing option '-o/--out': name the cleaned output file, e.g. -o cleaned.edf.")
        if demo and path is not None:
            raise UsageError("Give either a recording PATH or --demo, not both.")
        if not demo and path is None:
            raise UsageError("Missing argument PATH: the recording to clean (or --demo for a simulated one).")
        from ..utils import check_output_path

        # Checked before the (long) cleaning, with the same rules the writers apply afterwards.
        for p in (out, report, summary_json):
            if p is not None:
                check_output_path(p, overwrite=overwrite, inputs=[path])
        if report is not None and report.suffix.lower() != ".html":
            raise UsageError(f"Invalid value for '--report': expected a .html file, got {report.name!r}.")

        import torch

        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
        from ..artifacts.clean import clean_raw, make_demo_raw
        from ..io import read_raw, write_raw

        if demo:
            raw = make_demo_raw(duration_s=30.0)
            typer.echo("Cleaning the built-in SIMULATED demonstration recording (not real data).", err=True)
        else:
            raw = read_raw(path, preload=False)
        extra = {"screen": False} if thorough and method == "atat" else {}
        cleaned, summary = clean_raw(raw, method=method, artifacts=artifacts, progress=not quiet, **extra)
        write_raw(cleaned, out, overwrite=overwrite, inputs=[path] if path is not None else [])
        if report is not None:
            from ..report import cleaning_report

            cleaning_report(raw, cleaned, summary, report, overwrite=overwrite)
        if summary_json is not None:
            from ..utils import atomic_path

            with atomic_path(summary_json, overwrite=overwrite) as tmp:
                tmp.write_text(json.dumps(summary, indent=1))
        n_edit = summary.get("n_annotations_added", 0)
        typer.echo(
            f"wrote {out}: {summary['method']} removed {', '.join(summary['artifacts'])} from "
            f"{summary['n_channels_cleaned']} channels in {summary['seconds']:.1f} s; {n_edit} spans annotated"
            + (f"; report {report}" if report else "")
        )
