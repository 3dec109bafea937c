"""Dataset-scale batch preprocessing on Dask: resumable, BIDS derivatives, per-file status.

``run_batch(INPUT, DERIV, steps="clean,qc")`` is the Python entry point of ``neurodecode batch``.
"""

from .runner import BatchResult, run_batch

__all__ = ["run_batch", "BatchResult"]
