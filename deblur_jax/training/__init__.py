"""Training: train state and steps, losses, optimizers, checkpoints, the loop."""
