"""Stable hashes of JSON-like configs, used as cache keys."""

import hashlib
import json


def config_hash(config, n=16):
    """Return a short hex hash of ``config`` (keys sorted, JSON-serialised)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
