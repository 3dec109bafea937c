"""Shared generation backend: conditional diffusion with ANN or spiking denoisers."""
