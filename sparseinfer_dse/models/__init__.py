"""Model layer: load checkpoints, find their gated MLPs, classify activations."""
