"""``neurodecode info PATH``: what is in a recording, and what is wrong with it."""

import json
import warnings
from pathlib import Path

import typer


def register(app):
    @app.command()
    def info(
        path: Path = typer.Argument(..., help="Recording to inspect (any format read_raw reads)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    ):
        """Print channels and types, sampling rate, duration, annotations and problems found."""
        from ..io import read_raw

        problems = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = read_raw(path, preload=False)
        problems += [str(w.message) for w in caught]
        types = raw.get_channel_types()
        summary = {
            "file": str(path),
            "sfreq": float(raw.info["sfreq"]),
            "n_channels": len(raw.ch_names),
            "n_times": int(raw.n_times),
            "duration_s": float(raw.n_times / raw.info["sfreq"]),
            "channels": [{"name": n, "type": t} for n, t in zip(raw.ch_names, types)],
            "channel_type_counts": {t: types.count(t) for t in sorted(set(types))},
            "bads": list(raw.info["bads"]),
            "annotations": [
                {"onset": float(a["onset"]), "duration": float(a["duration"]), "description": a["description"]}
                for a in raw.annotations
            ],
            "problems": problems,
        }
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        typer.echo(f"{path}")
        typer.echo(f"  sampling rate : {summary['sfreq']:g} Hz")
        typer.echo(f"  duration      : {summary['duration_s']:.2f} s ({summary['n_times']} samples)")
        counts = ", ".join(f"{n} {t}" for t, n in summary["channel_type_counts"].items())
        typer.echo(f"  channels      : {summary['n_channels']} ({counts})")
        typer.echo("  names         : " + ", ".join(raw.ch_names))
        descs = {}
        for a in summary["annotations"]:
            descs[a["description"]] = descs.get(a["description"], 0) + 1
        typer.echo(f"  annotations   : {len(summary['annotations'])}" + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(descs.items())) + ")" if descs else ""))
        typer.echo(f"  problems      : {'none' if not problems else ''}")
        for p in problems:
            typer.echo(f"    - {p}")
