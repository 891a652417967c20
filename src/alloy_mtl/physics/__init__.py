"""Physics of X-ray transmission through aluminium alloys (no torch, no kedro)."""
