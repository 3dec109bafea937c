"""``neurodecode synth``: draw labelled synthetic artifact windows; build windows; train; report.

Examples::

    neurodecode synth --model ddpm --label eye --n 500 -o eye.h5 --guidance 2.0
    neurodecode synth windows -o artifact_windows.h5
    neurodecode synth train pipelines/synthesis_wgan.yaml --store artifact_windows.h5 -o wgan.safetensors
    neurodecode synth report --store artifact_windows.h5 --synthetic eye.h5 -o eye_report.html
"""

from pathlib import Path
from typing import Optional

import typer


def register(app):
    synth_app = typer.Typer(
        help="Label-aware synthetic EEG artifacts (conditional WGAN-GP, guided diffusion, AR baseline).",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @synth_app.callback()
    def synth(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Generator: 'wgan', 'ddpm' or 'ar'."),
        label: Optional[str] = typer.Option(None, "--label", help="Class: 'clean', 'eye' or 'muscle'."),
        n: int = typer.Option(500, "--n", help="Number of windows to draw."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output window store (.h5)."),
        guidance: float = typer.Option(1.0, "--guidance", help="Classifier-free guidance scale (ddpm; 1 = none)."),
        steps: int = typer.Option(50, "--steps", help="Sampling steps (ddpm)."),
        sampler: str = typer.Option("ddim", "--sampler", help="'ddim' or 'ddpm' (ddpm)."),
        seed: int = typer.Option(0, "--seed"),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Local weights instead of the shipped ones."),
        store: Optional[Path] = typer.Option(None, "--store", help="Real windows (needed for --model ar and --report)."),
        report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report against --store."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ):
        """Draw N synthetic windows of one label and write them as an HDF5 window store."""
        if ctx.invoked_subcommand is not None:
            return
        from ..utils import UsageError, check_option

        if model is None or label is None or output is None:
            raise UsageError("neurodecode synth needs --model, --label and -o/--output (see --help).")
        from ..artifacts.synthesis.api import MODELS, generate, load_generator, write_synthetic

        check_option("model", model, MODELS)
        check_option("label", label, ("clean", "eye", "muscle"))
        if n < 1:
            raise UsageError(f"Invalid value for '--n': expected a positive number of windows, got {n}.")
        if report is not None and store is None:
            raise UsageError("--report compares against real windows: pass --store WINDOWS.h5 as well.")
        import torch

        torch.set_num_threads(1)
        gen = load_generator(model, weights, store)
        X = generate(gen, [label] * n, seed=seed, guidance=guidance, steps=steps, sampler=sampler)
        meta = {"model": model, "guidance": guidance, "steps": steps, "sampler": sampler, "seed": seed,
                "weights": str(weights) if weights else "shipped"}
        write_synthetic(output, X, [label] * n, meta=meta, overwrite=overwrite)
        typer.echo(f"wrote {n} synthetic {label!r} windows from {model} to {output}")
        if report is not None:
            from ..synth_report import synthesis_report

            synthesis_report(store, output, report, overwrite=overwrite)
            typer.echo(f"wrote report {report}")

    @synth_app.command("windows")
    def windows(
        output: Path = typer.Option(..., "-o", "--output", help="Window store to write (.h5)."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ):
        """Build the labelled clean/eye/muscle windows from the real recordings (NEURODECODE_DATA)."""
        from ..datasets.artifact_windows import load_artifact_windows, write_artifact_windows

        write_artifact_windows(output, overwrite=overwrite)
        for split in ("train", "val", "test"):
            _, y, s = load_artifact_windows(output, split=split)
            counts = {lab: int((y == i).sum()) for i, lab in enumerate(("clean", "eye", "muscle"))}
            typer.echo(f"{split}: {len(y)} windows {counts} subjects {sorted(set(s.tolist()))}")

    @synth_app.command("train")
    def train(
        config: Path = typer.Argument(..., help="pipelines/synthesis_*.yaml"),
        store: Path = typer.Option(..., "--store", help="Window store from `neurodecode synth windows`."),
        output: Path = typer.Option(..., "-o", "--output", help="Weights to write (.safetensors)."),
        minutes: Optional[float] = typer.Option(None, "--minutes", help="Wall-clock training budget."),
        init_weights: Optional[Path] = typer.Option(None, "--init", help="Continue from these weights."),
        snapshot_dir: Optional[Path] = typer.Option(None, "--snapshot-dir", help="Also save snapshots here."),
        snapshot_every: Optional[int] = typer.Option(None, "--snapshot-every", help="Snapshot every N steps."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ):
        """Train a synthesis model from a pipeline config on the train split."""
        from ..utils import InputFileError

        if not config.exists():
            raise InputFileError(f"{config}: no such pipeline config.")
        from ..training.synthesis_system import train_from_config

        s = train_from_config(config, store=store, out=output, max_minutes=minutes, overwrite=overwrite,
                              init_weights=init_weights, snapshot_dir=snapshot_dir, snapshot_every=snapshot_every)
        typer.echo(f"trained {s['steps']} steps in {s['train_seconds']} s; wrote {output}")

    @synth_app.command("report")
    def report_cmd(
        store: Path = typer.Option(..., "--store", help="Real windows."),
        synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic windows from `neurodecode synth`."),
        output: Path = typer.Option(..., "-o", "--output", help="HTML report to write."),
        split: str = typer.Option("test", "--split", help="Real split to compare with."),
        overwrite: bool = typer.Option(False, "--overwrite"),
    ):
        """Compare real and synthetic windows: PSDs per class, example traces, fidelity table."""
        from ..synth_report import synthesis_report

        synthesis_report(store, synthetic, output, split=split, overwrite=overwrite)
        typer.echo(f"wrote report {output}")

    app.add_typer(synth_app, name="synth")
