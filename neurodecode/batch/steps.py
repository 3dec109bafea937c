"""The steps a batch can run, as a small registry resolved lazily.

A step takes one input file (the recording, or the previous step's main output) and writes its
outputs atomically into the recording's derivatives folder. Steps that come from other parts
of neurodecode (ATAT / ICA cleaning, HVEEGNet QC) are imported only when a step actually runs,
so planning a batch and ``neurodecode batch --help`` never import torch.

Built in:

``clean``
    ``method="bandpass"`` (default): chunked zero-phase FIR band-pass, streamed from disk to a
    streamed EDF+ file (bounded memory). ``method="filter"|"atat"|"ica"``:
    :func:`neurodecode.artifacts.clean.clean_raw` (the same cleaning as ``neurodecode clean``;
    its output Raw is backed by a temporary memory map for long recordings), written by the same
    EDF writer.
``qc``
    ``method="hveegnet"``: :class:`neurodecode.artifacts.hveegnet.HVEEGNet` annotations;
    ``method="amplitude"``: streamed peak-to-peak checks (``BAD_peak``/``BAD_flat`` spans, and a
    channels table naming channels bad in more than ``bad_percent`` % of the windows);
    ``method="auto"``: HVEEGNet when its weights are installed and the recording has the model's
    channels, otherwise amplitude with a recorded warning (the method used is in the summary).
``report``
    Always last: a self-contained HTML page per recording (summary, annotations, warnings,
    output hashes and an input-vs-clean spectrum).
"""

import functools
import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io._write import write_edf_streamed as _write_edf_streamed
from ..utils import InputFileError, UsageError, atomic_path

STEP_VERSION = {"clean": "1", "qc": "1", "report": "1"}
_CLEAN_METHODS = ("bandpass", "filter", "atat", "ica")
_QC_METHODS = ("auto", "amplitude", "hveegnet")


@dataclass
class StepContext:
    """What a step needs to know about the recording it processes.

    Attributes
    ----------
    deriv : Path
        Derivatives root.
    source : str
        The file this step reads (the recording, or the previous step's main output).
    recording : str
        The original recording (for reports).
    out_dir : Path
        ``DERIV/sub-XX[/ses-YY]/<datatype>``.
    base : str
        Output base name, e.g. ``sub-01_task-rest``.
    datatype : str
    upstream : dict
        Summaries of the steps already run on this recording, by step name.
    warnings : list of str
        Filled by the step with warnings to record in the status table.
    """

    deriv: Path
    source: str
    recording: str
    out_dir: Path
    base: str
    datatype: str
    upstream: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def _module_available(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@functools.lru_cache(maxsize=32)
def _file_digest(path, size, mtime_ns):
    from ..utils import sha256_file

    return sha256_file(path)


def _weights(prefix):
    """{file name: sha256} of the shipped weights starting with ``prefix``: a new model, a new key."""
    out = {}
    for p in sorted(_WEIGHTS_DIR.glob(f"{prefix}*.safetensors")):
        st = p.stat()
        out[p.name] = _file_digest(str(p), st.st_size, st.st_mtime_ns)
    return out


def resolve_config(step, cfg):
    """Return the step's configuration with 'auto' choices made (this goes into the cache key)."""
    if step == "clean":
        c = dict(cfg["clean"])
        if c["method"] not in _CLEAN_METHODS:
            raise UsageError(
                f"Invalid value for 'clean.method'. Allowed values are {', '.join(map(repr, _CLEAN_METHODS))}, "
                f"but got {c['method']!r} instead."
            )
        if c["method"] == "bandpass":
            return {k: c[k] for k in ("method", "l_freq", "h_freq", "chunk_s")}
        c = {k: c[k] for k in ("method", "artifacts", "chunk_s")}
        c["artifacts"] = sorted(c["artifacts"]) if not isinstance(c["artifacts"], str) else c["artifacts"]
        if c["method"] == "atat":
            c["weights"] = _weights("atat")
        return c
    if step == "qc":
        c = dict(cfg["qc"])
        if c["method"] not in _QC_METHODS:
            raise UsageError(
                f"Invalid value for 'qc.method'. Allowed values are {', '.join(map(repr, _QC_METHODS))}, "
                f"but got {c['method']!r} instead."
            )
        amplitude = {k: c[k] for k in ("window_s", "peak", "flat", "bad_percent", "chunk_s")}
        if c["method"] == "auto":
            usable = _module_available("neurodecode.artifacts.hveegnet") and _weights("hveegnet")
            # With weights, 'auto' stays per recording: hvEEGNet where its channels are present,
            # the amplitude check (with a recorded warning) where they are not.
            return {"method": "auto", "weights": _weights("hveegnet"), **amplitude} if usable else {
                "method": "amplitude", **amplitude}
        if c["method"] == "hveegnet":
            return {"method": "hveegnet", "weights": _weights("hveegnet")}
        return {"method": "amplitude", **amplitude}
    if step == "report":
        return dict(cfg["report"])
    raise KeyError(step)


def check_steps(steps, cfg):
    """Validate the step list; 'report' is implicit and always runs last."""
    if isinstance(steps, str):
        steps = [s.strip() for s in steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in ("clean", "qc")]
    if unknown or not steps:
        raise UsageError(
            f"Invalid value for '--steps'. Allowed steps are 'clean' and 'qc' (comma-separated), "
            f"but got {','.join(steps) or '(none)'!r} instead."
        )
    if len(set(steps)) != len(steps):
        raise UsageError(f"'--steps' lists a step twice: {','.join(steps)!r}.")
    order = [s for s in ("clean", "qc") if s in steps]
    for s in order:
        resolve_config(s, cfg)  # raises on a bad method
    return order


def open_raw(path, problems):
    """Read lazily and record every reader warning (MNE warns only at verbose >= 'warning')."""
    from ..io import read_raw

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = read_raw(path, preload=False, verbose="warning")
    for w in caught:
        msg = f"{Path(path).name}: {w.message}"
        if msg not in problems:
            problems.append(msg)
    return raw


def datatype_of(raw):
    types = set(raw.get_channel_types())
    if types & {"mag", "grad"}:
        return "meg"
    if types & {"seeg", "ecog", "dbs"}:
        return "ieeg"
    return "eeg"


def _data_picks(raw):
    from .streaming import DATA_TYPES

    return np.array([i for i, t in enumerate(raw.get_channel_types()) if t in DATA_TYPES], int)


def _annotations_rel(raw):
    """Annotations as (onset relative to the first sample, duration, description)."""
    ann = raw.annotations
    offset = raw.first_time if ann.orig_time is not None else 0.0
    return [(float(o - offset), float(d), str(t)) for o, d, t in zip(ann.onset, ann.duration, ann.description)]


def run_clean(ctx, config):
    """Clean one recording into ``<base>_desc-clean_<datatype>.edf``; returns (outputs, summary)."""
    from .streaming import design_fir, filtered_chunks, merge_spans

    raw = open_raw(ctx.source, ctx.warnings)
    sf = raw.info["sfreq"]
    out = ctx.out_dir / f"{ctx.base}_desc-clean_{ctx.datatype}.edf"
    chunk = max(1, int(round(config["chunk_s"] * sf)))
    annotations = _annotations_rel(raw)
    summary = {"method": config["method"], "n_channels": len(raw.ch_names), "sfreq": sf, "n_times": int(raw.n_times)}
    if config["method"] == "bandpass":
        h_freq = config["h_freq"]
        if h_freq is not None and h_freq >= sf / 2:
            ctx.warnings.append(f"h_freq={h_freq} Hz is not below the Nyquist frequency ({sf / 2:g} Hz); low-pass skipped.")
            h_freq = None
        h = design_fir(sf, config["l_freq"], h_freq)
        picks = _data_picks(raw)
        nan_spans = []

        def chunks():
            nan_spans.clear()
            return filtered_chunks(raw, h=h, picks=picks, chunk_samples=chunk, nan_spans=nan_spans)

        def all_annotations():
            # Called by the writer after the first pass over the data, which found the NaN spans.
            spans = merge_spans(nan_spans)
            if spans:
                ctx.warnings.append(
                    f"{Path(ctx.source).name}: {len(spans)} span(s) with NaN samples were set to 0 before "
                    "filtering and marked BAD_NAN."
                )
            summary["bad_nan_spans"] = len(spans)
            # read_raw already marked NaN spans; the spans found per sample here replace them.
            kept = [a for a in annotations if a[2] != "BAD_NAN"]
            return kept + [(s / sf, (e - s) / sf, "BAD_NAN") for s, e in spans]

        prefilter = f"HP:{config['l_freq']}Hz" + (f" LP:{h_freq}Hz" if h_freq else "")
        _write_edf_streamed(out, raw, chunks, n_times=raw.n_times, annotations=all_annotations,
                            prefilter=prefilter, sources=[ctx.source])
        summary.update(filter_taps=int(len(h)), n_filtered_channels=int(len(picks)))
    else:
        try:
            from ..artifacts.clean import clean_raw
        except ImportError as err:
            raise UsageError(
                f"clean.method={config['method']!r} needs neurodecode.artifacts.clean.clean_raw, which this "
                "installation does not have; use clean.method='bandpass'."
            ) from err
        # clean_raw reads lazily in chunks; its output is a RawArray (memory-mapped when long).
        cleaned, info = clean_raw(raw, method=config["method"], artifacts=tuple(config["artifacts"]), progress=False,
                                  chunk_s=config["chunk_s"])
        annotations = _annotations_rel(cleaned)

        def chunks():
            for s in range(0, cleaned.n_times, chunk):
                e = min(s + chunk, cleaned.n_times)
                yield s, e, cleaned.get_data(start=s, stop=e)

        _write_edf_streamed(out, cleaned, chunks, n_times=cleaned.n_times, annotations=annotations,
                            prefilter=f"neurodecode clean {config['method']}", sources=[ctx.source])
        # Timings vary from run to run; outputs and manifests must not.
        summary["clean_summary"] = {k: v for k, v in _jsonable(info).items() if k not in ("seconds", "timings")}
    summary["annotations"] = _count(_annotations_rel(open_raw(out, [])))
    return {"main": out}, summary


def _count(annotations):
    counts = {}
    for a in annotations:
        d = a[2]
        counts[d] = counts.get(d, 0) + 1
    return dict(sorted(counts.items()))


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))


def run_qc(ctx, config):
    """QC annotations as ``<base>_desc-qc_annotations.tsv`` (onset, duration, trial_type, channels)."""
    raw = open_raw(ctx.source, ctx.warnings)
    sf = raw.info["sfreq"]
    rows = []
    summary = {"method": config["method"]}
    outputs = {}
    method = "hveegnet" if config["method"] == "auto" else config["method"]
    if method == "hveegnet":
        hv = importlib.import_module("neurodecode.artifacts.hveegnet")
        before = len(raw.annotations)
        try:
            annotated = hv.HVEEGNet.from_pretrained().annotate(raw)
        except InputFileError as err:
            if config["method"] != "auto":
                raise
            ctx.warnings.append(f"hvEEGNet not applicable to this recording ({err}) Amplitude check used instead.")
            method = "amplitude"
        else:
            for o, d, t in _annotations_rel(annotated)[before:]:
                rows.append((o, d, t, "n/a"))
    summary["method_used"] = method
    if method == "amplitude":
        from .streaming import amplitude_annotations, amplitude_qc_chunks

        types = raw.get_channel_types()
        picks = np.array([i for i, t in enumerate(types) if t in ("eeg", "mag", "grad", "seeg", "ecog")], int)
        if not len(picks):
            raise InputFileError(f"{Path(ctx.recording).name}: no EEG/MEG/iEEG channels to check.")
        win = max(1, int(round(config["window_s"] * sf)))
        masks = amplitude_qc_chunks(
            raw, picks=picks, chunk_samples=int(round(config["chunk_s"] * sf)), window_samples=win,
            peak=config["peak"], flat=config["flat"],
        )
        spans, bads, fractions = amplitude_annotations(masks, win, config["bad_percent"])
        names = [raw.ch_names[i] for i in picks]
        for kind, ss in spans.items():
            for s, e in ss:
                rows.append((s / sf, (e - s) / sf, kind, "n/a"))
        n_win = raw.n_times // win
        summary.update(
            n_windows=int(n_win),
            bad_fraction={k: round(float(sum(e - s for s, e in v) / max(1, n_win * win)), 6) for k, v in spans.items()},
            bad_channels={k: [names[i] for i in v] for k, v in bads.items()},
        )
        # BIDS channels.tsv conventions: one row per checked channel, status good/bad and why.
        ch_out = ctx.out_dir / f"{ctx.base}_desc-qc_channels.tsv"
        with atomic_path(ch_out, overwrite=True, inputs=[ctx.recording]) as tmp:
            with open(tmp, "w") as f:
                f.write("name\ttype\tstatus\tstatus_description\n")
                for j, i in enumerate(picks):
                    why = [f"{k} in {100 * fractions[k][j]:.1f}% of {config['window_s']:g} s windows"
                           for k in ("BAD_peak", "BAD_flat") if j in bads[k]]
                    f.write(f"{raw.ch_names[i]}\t{types[i].upper()}\t{'bad' if why else 'good'}\t"
                            f"{'; '.join(why) or 'n/a'}\n")
        outputs["channels"] = ch_out
    rows.sort()
    out = ctx.out_dir / f"{ctx.base}_desc-qc_annotations.tsv"
    with atomic_path(out, overwrite=True, inputs=[ctx.recording]) as tmp:
        with open(tmp, "w") as f:
            f.write("onset\tduration\ttrial_type\tchannels\n")
            for o, d, t, ch in rows:
                f.write(f"{o:.6f}\t{d:.6f}\t{t}\t{ch}\n")
    summary["annotations"] = _count(rows)
    return {"main": out, **outputs}, summary


def run_report(ctx, config):
    """Write ``<base>_report.html``."""
    from .report_html import write_report

    out = ctx.out_dir / f"{ctx.base}_report.html"
    write_report(out, ctx, config)
    return {"main": out}, {}


RUNNERS = {"clean": run_clean, "qc": run_qc, "report": run_report}
