"""Dataset builders: raw sources -> windowed HDF5 stores with their split protocols."""
