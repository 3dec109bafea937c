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


class HashMemo:
    """Opt-in (``trust_file_stat: true``): skip re-reading inputs whose file status is unchanged.

    Content hashing reads every input on every run, which for a large dataset costs minutes of
    I/O on a rerun that has nothing to do. With this memo, an input whose size, modification
    time, status-change time and inode all equal those recorded when it was last hashed keeps
    its recorded hash. Any write to a file changes its status-change time (ctime), which user
    programs cannot set, so content edits are still seen; a file replaced by another gets a new
    inode. Outputs are always verified by content. Kept in ``_cache/input_hashes.json``, written
    only by the coordinator.
    """

    def __init__(self, deriv):
        self.path = Path(deriv) / CACHE_DIR / "input_hashes.json"
        try:
            self.table = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.table = {}
        self.n_read = 0

    @staticmethod
    def _signature(paths):
        sig = []
        for p in paths:
            st = os.stat(p)
            sig.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        return sig

    def input_hash(self, rec):
        sig = self._signature([rec.path, *rec.companions])
        entry = self.table.get(rec.relpath)
        if isinstance(entry, dict) and entry.get("stat") == sig:
            return entry["sha256"]
        digest = input_hash(rec.path, rec.companions)
        self.n_read += 1
        self.table[rec.relpath] = {"stat": sig, "sha256": digest}
        return digest

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, overwrite=True) as tmp:
            Path(tmp).write_text(json.dumps(self.table, indent=0, sort_keys=True) + "\n")
