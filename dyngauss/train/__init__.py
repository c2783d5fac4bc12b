"""Training: the loop, optimizers, densification hooks, checkpoints, logging."""
