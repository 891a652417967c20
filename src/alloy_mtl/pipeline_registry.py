"""Project pipelines: data_generation, data_processing, train_<arch>, evaluation and train_all."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from alloy_mtl.pipelines import data_processing


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects; ``__default__`` is ``train_all``.
    """
    processing = data_processing.create_pipeline()
    pipelines: dict[str, Pipeline] = {
        "data_generation": processing.only_nodes("acquire_dataset"),
        "data_processing": processing,
    }
    pipelines["train_all"] = processing
    pipelines["__default__"] = pipelines["train_all"]
    return pipelines
