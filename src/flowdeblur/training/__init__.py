"""Training: typed configs, the loop, losses (Eq. 14) and checkpoints."""
