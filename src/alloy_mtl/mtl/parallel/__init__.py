"""Data-parallel training over torchrun processes (DDP)."""
