"""Dataset-scale batch preprocessing on Dask."""
