"""A streaming EDF+ writer: data records are written as chunks arrive, so memory stays bounded.

MNE's ``export_raw`` (through edfio) needs the whole recording in memory, which rules it out
for 10-hour files. EDF+ is simple enough to write record by record: a fixed ASCII header, then
data records of 16-bit integers, each followed by the "EDF Annotations" signal holding
time-stamped annotation lists (TALs). The output is a pure function of the data, the header
fields and the annotations (no clock, no random ids), so writing twice gives identical bytes,
which is what the resume guarantee of the batch runner relies on.
"""

import math
from datetime import datetime, timezone

import numpy as np

from ..utils import UsageError

DIG_MIN, DIG_MAX = -32768, 32767

# Channel type -> (physical dimension written in the header, factor from SI units).
_UNITS = {
    "eeg": ("uV", 1e6), "eog": ("uV", 1e6), "ecg": ("uV", 1e6), "emg": ("uV", 1e6),
    "seeg": ("uV", 1e6), "ecog": ("uV", 1e6), "dbs": ("uV", 1e6), "bio": ("uV", 1e6),
    "mag": ("fT", 1e15), "grad": ("fT/cm", 1e13),
}


def channel_units(ch_types):
    """Return (physical dimensions, scale factors from SI) for each channel type."""
    dims, scales = zip(*[_UNITS.get(t, ("", 1.0)) for t in ch_types]) if ch_types else ((), ())
    return list(dims), np.asarray(scales, float)


def record_duration(sfreq, n_channels, max_bytes=61440):
    """Pick a data-record duration (s) holding an integer number of samples per channel.

    EDF needs the same integer number of samples in every record; the specification prefers
    records under 61440 bytes, so shorter records are tried when one second is too big.
    """
    candidates = (1.0, 0.5, 0.25, 0.2, 0.125, 0.1, 0.05, 0.04, 0.025, 0.02, 0.01, 2.0, 4.0, 5.0, 10.0)
    fitting = [d for d in candidates if abs(sfreq * d - round(sfreq * d)) < 1e-6 and round(sfreq * d) > 0]
    if not fitting:
        raise UsageError(
            f"Cannot write EDF at a sampling rate of {sfreq!r} Hz: no data-record duration holds a whole "
            "number of samples. Resample the recording to an integer rate first."
        )
    small = [d for d in fitting if 2 * n_channels * round(sfreq * d) <= max_bytes]
    return (small or [min(fitting)])[0]


def _fmt_field(value, width, *, direction):
    """Format a number into ``width`` ASCII characters, rounding down (min) or up (max)."""
    for decimals in range(width, -1, -1):
        q = 10.0 ** decimals
        v = math.floor(value * q) / q if direction == "down" else math.ceil(value * q) / q
        s = f"{v:.{decimals}f}"
        if len(s) <= width:
            return s, float(s)
    raise UsageError(f"Cannot write the value {value!r} into an EDF header field of {width} characters.")


def physical_range(lo, hi):
    """EDF header strings and values for a channel whose data lie in [lo, hi].

    The range is widened outwards to what 8 characters can hold, so the data never clip;
    a constant channel gets a range of +-1 around its value (EDF forbids min == max).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = -1.0, 1.0
    if hi - lo <= 0:
        lo, hi = lo - 1.0, hi + 1.0
    smin, vmin = _fmt_field(float(lo), 8, direction="down")
    smax, vmax = _fmt_field(float(hi), 8, direction="up")
    if vmax <= vmin:
        smax, vmax = _fmt_field(vmin + 1.0, 8, direction="up")
    return (smin, vmin), (smax, vmax)


def _tal_time(t):
    s = f"{abs(t):.6f}".rstrip("0").rstrip(".")
    return ("-" if t < 0 else "+") + (s or "0")


def _tal(onset, duration, text):
    clean = "".join(c if 32 <= ord(c) < 127 else "_" for c in str(text))
    dur = f"\x15{_tal_time(duration)[1:]}" if duration > 0 else ""
    return f"{_tal_time(onset)}{dur}\x14{clean}\x14\x00".encode("ascii")


def _pad(s, width):
    s = "".join(c if 32 <= ord(c) < 127 else "_" for c in str(s))
    return s[:width].ljust(width).encode("ascii")


class EdfStreamWriter:
    """Write an EDF+C file record by record.

    Parameters
    ----------
    fileobj : binary file
        Open for writing, positioned at 0 (the caller owns atomic renaming).
    ch_names : list of str, length n_channels
    ch_types : list of str, length n_channels
        MNE channel types; they choose the physical dimension (µV, fT, fT/cm, or none).
    sfreq : float
    n_times : int
        Samples per channel that will be written in total.
    ranges : array, shape (n_channels, 2)
        Minimum and maximum of each channel in SI units over the whole recording.
    annotations : list of (onset_s, duration_s, description)
        Onsets relative to the first sample.
    meas_date : datetime | None
    prefilter : str
        Written in every signal's "prefiltering" field, e.g. ``"HP:1Hz LP:40Hz"``.
    """

    def __init__(self, fileobj, *, ch_names, ch_types, sfreq, n_times, ranges, annotations=(),
                 meas_date=None, prefilter="", patient="X X X X"):
        for name in ch_names:
            if len(name) > 16:
                raise UsageError(f"Channel name {name!r} is longer than the 16 characters EDF allows.")
        self.f = fileobj
        self.n_ch = len(ch_names)
        self.sfreq = float(sfreq)
        self.n_times = int(n_times)
        self.rec_dur = record_duration(self.sfreq, self.n_ch)
        self.spr = int(round(self.sfreq * self.rec_dur))
        self.n_records = max(1, math.ceil(self.n_times / self.spr))
        n_padded = self.n_records * self.spr - self.n_times
        annotations = [(float(o), float(d), str(t)) for o, d, t in annotations]
        if n_padded:
            # Same convention as MNE's exporter: pad the last record and say so.
            annotations.append((self.n_times / self.sfreq, n_padded / self.sfreq, "BAD_ACQ_SKIP"))
        dims, self.scales = channel_units(ch_types)
        ranges = np.asarray(ranges, float) * self.scales[:, None]
        phys = [physical_range(lo, hi) for lo, hi in ranges]
        self.pmin = np.array([p[0][1] for p in phys])
        self.pmax = np.array([p[1][1] for p in phys])
        # Annotation TALs, grouped by the record holding their onset.
        self.tals = [[] for _ in range(self.n_records)]
        for onset, dur, text in sorted(annotations):
            rec = min(max(int(onset // self.rec_dur), 0), self.n_records - 1)
            self.tals[rec].append(_tal(onset, dur, text))
        longest = max(len(_tal_time(r * self.rec_dur)) + 3 + sum(map(len, t)) for r, t in enumerate(self.tals))
        self.annot_spr = max(8, (longest + 1) // 2 + 1)
        self._write_header(ch_names, dims, phys, meas_date, prefilter, patient)
        self._buf = np.empty((self.n_ch, 0))
        self._rec = 0
        self._written = 0

    def _write_header(self, ch_names, dims, phys, meas_date, prefilter, patient):
        ns = self.n_ch + 1
        if meas_date is None:
            start = datetime(1985, 1, 1, tzinfo=timezone.utc)  # EDF's "unknown date"
            rec_id = "Startdate X X X X"
        else:
            start = meas_date.astimezone(timezone.utc)
            if not 1985 <= start.year <= 2084:
                start = datetime(1985, 1, 1, tzinfo=timezone.utc)
            rec_id = f"Startdate {start.strftime('%d')}-{start.strftime('%b').upper()}-{start.year} X X X"
        h = [
            _pad("0", 8), _pad(patient, 80), _pad(rec_id, 80),
            _pad(start.strftime("%d.%m.%y"), 8), _pad(start.strftime("%H.%M.%S"), 8),
            _pad(str(256 * (ns + 1)), 8), _pad("EDF+C", 44), _pad(str(self.n_records), 8),
            _pad(f"{self.rec_dur:g}", 8), _pad(str(ns), 4),
        ]
        labels = list(ch_names) + ["EDF Annotations"]
        h += [_pad(x, 16) for x in labels]
        h += [_pad("", 80) for _ in labels]
        h += [_pad(d, 8) for d in dims] + [_pad("", 8)]
        h += [_pad(p[0][0], 8) for p in phys] + [_pad("-1", 8)]
        h += [_pad(p[1][0], 8) for p in phys] + [_pad("1", 8)]
        h += [_pad(str(DIG_MIN), 8) for _ in labels]
        h += [_pad(str(DIG_MAX), 8) for _ in labels]
        h += [_pad(prefilter, 80) for _ in ch_names] + [_pad("", 80)]
        h += [_pad(str(self.spr), 8) for _ in ch_names] + [_pad(str(self.annot_spr), 8)]
        h += [_pad("", 32) for _ in labels]
        header = b"".join(h)
        assert len(header) == 256 * (ns + 1)
        self.f.write(header)

    def _digitise(self, block):
        """(n_ch, n_rec * spr) in SI units -> int16 records (n_rec, n_ch, spr)."""
        phys = block * self.scales[:, None]
        gain = (DIG_MAX - DIG_MIN) / (self.pmax - self.pmin)
        dig = np.rint((phys - self.pmin[:, None]) * gain[:, None] + DIG_MIN)
        np.clip(dig, DIG_MIN, DIG_MAX, out=dig)
        n_rec = block.shape[1] // self.spr
        return dig.astype("<i2").reshape(self.n_ch, n_rec, self.spr).transpose(1, 0, 2)

    def _emit(self, records):
        annot_bytes = 2 * self.annot_spr
        for rec in records:
            tal = _tal_time(self._rec * self.rec_dur).encode() + b"\x14\x14\x00" + b"".join(self.tals[self._rec])
            self.f.write(np.ascontiguousarray(rec).tobytes())
            self.f.write(tal.ljust(annot_bytes, b"\x00"))
            self._rec += 1

    def write(self, chunk):
        """Append ``chunk`` (n_channels, n) in SI units; full records are written at once."""
        chunk = np.asarray(chunk, float)
        if chunk.shape[0] != self.n_ch:
            raise ValueError(f"expected {self.n_ch} channels, got {chunk.shape[0]}")
        self._written += chunk.shape[1]
        if self._written > self.n_times:
            raise ValueError("more samples written than announced in n_times")
        buf = np.concatenate([self._buf, chunk], axis=1) if self._buf.shape[1] else chunk
        n_full = (buf.shape[1] // self.spr) * self.spr
        if n_full:
            self._emit(self._digitise(buf[:, :n_full]))
        self._buf = buf[:, n_full:].copy()

    def close(self):
        """Pad the last record with its final values and write it."""
        if self._written != self.n_times:
            raise ValueError(f"wrote {self._written} samples but announced {self.n_times}")
        if self._buf.shape[1] or self._rec < self.n_records:
            missing = self.n_records * self.spr - self._rec * self.spr - self._buf.shape[1]
            edge = self._buf[:, -1:] if self._buf.shape[1] else np.zeros((self.n_ch, 1))
            block = np.concatenate([self._buf, np.repeat(edge, missing, axis=1)], axis=1)
            self._emit(self._digitise(block))
            self._buf = np.empty((self.n_ch, 0))
        assert self._rec == self.n_records
