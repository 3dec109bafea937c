"""``neurodecode qc IN``: hvEEGNet quality control of one recording."""

import json
from pathlib import Path
from typing import Optional

import typer


def register(app):
    @app.command()
    def qc(
        path: Path = typer.Argument(..., help="Recording to check (any format read_raw reads)."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the recording with BAD_hveegnet annotations (.fif, .edf, .bdf, .vhdr)."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write an HTML report (score over time, worst windows)."),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="Score threshold (default: the calibrated one shipped with the weights)."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Local .safetensors weights (default: shipped eegmmidb weights)."),
        interpolate_missing: bool = typer.Option(False, "--interpolate-missing", help="Interpolate up to 3 missing model channels from the 10-05 montage instead of refusing."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    ):
        """Score every 1 s window against hvEEGNet's prediction of it and flag the corrupted ones."""
        from ..artifacts.hveegnet import HVEEGNet
        from ..io import read_raw, write_raw
        from ..utils import UsageError

        if threshold is not None and not threshold == threshold:
            raise UsageError("Invalid value for '--threshold': expected a number, got NaN.")
        from ..utils import check_output_path

        for target in (out, report):
            if target is not None:
                check_output_path(target, overwrite=overwrite, inputs=[path])
        if report is not None and report.suffix.lower() != ".html":
            raise UsageError(f"Invalid value for '--report': expected a .html path, got {report}.")
        import torch

        torch.set_num_threads(1)
        model = HVEEGNet.from_pretrained(weights)
        raw = read_raw(path, preload=False)
        missing = "interpolate" if interpolate_missing else "raise"
        scores = model.score(raw, missing=missing)
        if threshold is not None:
            scores.threshold = float(threshold)
        summary = scores.summary()
        summary.update(file=str(path), duration_s=raw.n_times / raw.info["sfreq"], interpolated=scores.interpolated)
        if out is not None:
            annotated = model.annotate(raw, scores=scores)
            write_raw(annotated, out, overwrite=overwrite, inputs=[path])
            summary["output"] = str(out)
        if report is not None:
            from ..qc_report import qc_report

            qc_report(report, scores, model, raw, overwrite=overwrite, missing=missing)
            summary["report"] = str(report)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        typer.echo(f"{path}")
        typer.echo(f"  duration        : {summary['duration_s']:.1f} s, {summary['n_windows']} windows of 1 s")
        typer.echo(
            f"  flagged         : {summary['n_flagged']} windows, {100 * summary['fraction_flagged']:.1f}% of time "
            f"(threshold {summary['threshold']:.3f})"
        )
        worst = ", ".join(f"{n} ({k})" for n, k in summary["worst_channels"]) or "none"
        typer.echo(f"  worst channels  : {worst}")
        if scores.interpolated:
            typer.echo(f"  interpolated    : {', '.join(scores.interpolated)}")
        if out is not None:
            typer.echo(f"  annotated copy  : {out}")
        if report is not None:
            typer.echo(f"  report          : {report}")
