"""Per-task losses: imbalance-aware classification losses, regression losses, LDS and FDS."""
