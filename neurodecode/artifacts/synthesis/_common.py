"""Shared pieces of the synthesis models: shipped-weight loading and saving, label lookup."""

import json
from pathlib import Path

import numpy as np

from ...utils import InputFileError, UsageError, atomic_path

LABELS = ("clean", "eye", "muscle")
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


def label_ids(labels, n_classes=len(LABELS), names=LABELS):
    """Turn label names or ints into an int64 array, with a clear error for unknown ones."""
    out = []
    for lab in np.atleast_1d(np.asarray(labels, dtype=object)):
        if isinstance(lab, str):
            if lab not in names:
                raise UsageError(
                    f"Invalid value for the 'label' parameter. Allowed values are {', '.join(map(repr, names))}, "
                    f"but got {lab!r} instead."
                )
            out.append(names.index(lab))
        else:
            i = int(lab)
            if not 0 <= i < n_classes:
                raise UsageError(f"Invalid label index {i}: expected 0..{n_classes - 1}.")
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def save_model(model, path, *, overwrite=False, extra=None):
    """Write ``model``'s state and config to one safetensors file (atomic)."""
    from safetensors.torch import save_file

    meta = {"config": json.dumps(dict(model.config)), "class": type(model).__name__}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


def load_model(cls, path):
    """Build ``cls`` from the config stored in ``path`` and load its weights."""
    from ...utils import read_safetensors

    state, meta = read_safetensors(path, what=f"{cls.__name__} weights")
    if meta.get("class") != cls.__name__:
        raise InputFileError(f"{path}: holds a {meta.get('class')!r} model, expected {cls.__name__!r}.")
    cfg = {k: v for k, v in json.loads(meta["config"]).items() if not k.startswith("_")}
    model = cls(**cfg)
    model.load_state_dict(state)
    model.eval()
    return model
