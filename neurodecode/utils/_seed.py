"""Seeding that does not import torch unless it is already imported."""

import os
import random
import sys

import numpy as np


def seed_everything(seed):
    """Seed Python, NumPy and (if imported) torch; return the seed for recording."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    return seed
