"""``neurodecode info PATH``: what is in a recording, and what is wrong with it."""

import json
import warnings
from pathlib import Path

import typer

_FMRI_SUFFIXES = (".nii", ".nii.gz", ".h5", ".hdf5")


def describe(path):
    """Return a JSON-serialisable summary of the recording at ``path``.

    M/EEG: channels and types, sampling rate, duration, annotations and problems found.
    fMRI (NIfTI/HDF5): volume shape, number of volumes, TR, voxels in the mask, problems.
    """
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if path.name.lower().endswith(_FMRI_SUFFIXES):
            summary = _describe_bold(path)
        else:
            summary = _describe_raw(path)
    summary["problems"] = sorted({str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)})
    return summary


def _describe_raw(path):
    from ..io import read_raw

    raw = read_raw(path, preload=False)
    types = raw.get_channel_types()
    return {
        "file": str(path),
        "kind": "meeg",
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
    }


def _describe_bold(path):
    from ..io import read_bold

    run = read_bold(path)
    return {
        "file": str(path),
        "kind": "fmri",
        "volume_shape": list(run.data.shape[:3]),
        "n_volumes": int(run.n_volumes),
        "tr_s": float(run.tr),
        "duration_s": float(run.n_volumes * run.tr),
        "n_voxels_in_mask": run.masker.n_voxels,
    }


def _print_text(s):
    typer.echo(s["file"])
    if s["kind"] == "fmri":
        typer.echo(f"  volumes       : {s['n_volumes']} of {' x '.join(map(str, s['volume_shape']))} voxels")
        typer.echo(f"  TR            : {s['tr_s']:g} s ({s['duration_s']:.1f} s in all)")
        typer.echo(f"  mask          : {s['n_voxels_in_mask']} voxels")
    else:
        typer.echo(f"  sampling rate : {s['sfreq']:g} Hz")
        typer.echo(f"  duration      : {s['duration_s']:.2f} s ({s['n_times']} samples)")
        counts = ", ".join(f"{n} {t}" for t, n in s["channel_type_counts"].items())
        typer.echo(f"  channels      : {s['n_channels']} ({counts})")
        typer.echo("  names         : " + ", ".join(c["name"] for c in s["channels"]))
        if s["bads"]:
            typer.echo("  bad channels  : " + ", ".join(s["bads"]))
        descs = {}
        for a in s["annotations"]:
            descs[a["description"]] = descs.get(a["description"], 0) + 1
        listed = " (" + ", ".join(f"{k}: {v}" for k, v in sorted(descs.items())) + ")" if descs else ""
        typer.echo(f"  annotations   : {len(s['annotations'])}{listed}")
    typer.echo(f"  problems      : {'none' if not s['problems'] else len(s['problems'])}")
    for p in s["problems"]:
        typer.echo(f"    - {p}")


def register(app):
    @app.command()
    def info(
        paths: list[Path] = typer.Argument(..., help="Recording(s) to inspect: any format read_raw or read_bold reads."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per file, in a list) instead of text."),
    ):
        """Print channels and types, sampling rate, duration, annotations and problems found.

        Exit code 0 when every file was read, 1 when any could not be read (each gets one
        sentence on stderr), 2 for a usage error.
        """
        from ..utils import NeurodecodeError

        summaries, failed = [], 0
        for path in paths:
            try:
                summaries.append(describe(path))
            except NeurodecodeError as err:
                if len(paths) == 1:
                    raise
                typer.echo(f"Error: {err}", err=True)
                failed += 1
        if as_json:
            typer.echo(json.dumps(summaries[0] if len(paths) == 1 else summaries, indent=2))
        else:
            for s in summaries:
                _print_text(s)
        if failed:
            raise typer.Exit(1)
