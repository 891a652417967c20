"""Ingestion, array store, validation and splitting of X-ray datasets (no kedro)."""
