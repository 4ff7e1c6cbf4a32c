"""The prepared GPU check and the model of a GPU training step (what to measure when a GPU is lent)."""
