"""Label-aware artifact synthesis: conditional WGAN-GP and diffusion."""
