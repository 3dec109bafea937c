"""Cache keys and per-(recording, step) manifests: what makes a rerun skip finished work.

The key of a step is a hash of (the content of its input, the step's resolved configuration,
the step's code version, the tool version). A step is done when its manifest holds that key
and every output it lists exists with the recorded SHA-256. The manifest is written last,
atomically, after the outputs: a run killed at any point leaves either no manifest (the step
is redone) or a manifest whose outputs are complete. Content hashes rather than modification
times are used because mtimes are unreliable on network file systems (mne-bids-pipeline #814).

Manifests are JSON (no pickles), deterministic (no clocks), under ``DERIV/_cache/<uid>/``.
"""

import hashlib
import json
import os
from pathlib import Path

from ..utils import atomic_path, sha256_file

CACHE_DIR = "_cache"


def input_hash(path, companions=()):
    """SHA-256 over the bytes of a recording and its companion files (e.g. ``.fdt``)."""
    h = hashlib.sha256()
    for p in [path, *companions]:
        h.update(Path(p).name.encode() + b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def step_key(step, step_version, config, upstream_hash, tool_version):
    """The cache key of one step on one recording (hex SHA-256)."""
    blob = json.dumps(
        {"step": step, "step_version": step_version, "config": config, "input": upstream_hash, "tool": tool_version},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def manifest_path(deriv, uid, step):
    return Path(deriv) / CACHE_DIR / uid / f"{step}.json"


def read_manifest(deriv, uid, step):
    """The manifest dict, or ``None`` when absent or unreadable (then the step is redone)."""
    p = manifest_path(deriv, uid, step)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "key" in data and "outputs" in data else None


def verify(deriv, manifest, key):
    """True when ``manifest`` has ``key`` and every listed output exists with its hash."""
    if manifest is None or manifest.get("key") != key:
        return False
    for rel, digest in manifest["outputs"].items():
        p = Path(deriv) / rel
        if not p.is_file() or sha256_file(p) != digest:
            return False
    return True


def write_manifest(deriv, uid, step, data):
    """Write the manifest atomically (the completion marker of the step)."""
    p = manifest_path(deriv, uid, step)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p, overwrite=True) as tmp:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
    return p


def remove_stale_temporaries(deriv):
    """Delete temporary files left by a killed run (only names our writers make).

    Called by the coordinator while it holds the run lock, so no live writer owns them.
    """
    removed = []
    for dirpath, _, files in os.walk(deriv):
        for name in files:
            if name.startswith(".") and (".tmp-" in name):
                os.unlink(os.path.join(dirpath, name))
                removed.append(os.path.join(dirpath, name))
    return removed
