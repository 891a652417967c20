"""Data-parallel training: the strategy the trainer calls (strategy), DDP over torchrun processes (ddp),
the process group and its collectives (process_group)."""
