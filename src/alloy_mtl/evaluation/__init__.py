"""Metrics, plots, cross-model comparison and ensembles (no kedro)."""
