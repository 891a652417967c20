"""Datasets that read what another pipeline may not have written yet: a model file, the ensemble weights, the
physics unknown score's table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError

from alloy_mtl.datasets import OptionalCSVDataset, OptionalJSONDataset, TorchBundleDataset


def test_a_missing_bundle_fails_unless_missing_is_allowed(tmp_path):
    path = str(tmp_path / "fnn" / "model.pt")
    with pytest.raises(DatasetError, match="train the model first"):
        TorchBundleDataset(path).load()
    assert TorchBundleDataset(path, missing_ok=True).load() == {}
    TorchBundleDataset(path).save({"arch": "fnn"})
    assert TorchBundleDataset(path, missing_ok=True).load() == {"arch": "fnn"}


def test_an_optional_json_file_reads_as_none_until_it_exists_and_is_never_written(tmp_path):
    path = tmp_path / "ensemble_selection.json"
    dataset = OptionalJSONDataset(str(path))
    assert dataset.load() is None and not dataset.exists()
    path.write_text(json.dumps({"weights": {"fnn": 1.0}}))
    assert dataset.load() == {"weights": {"fnn": 1.0}}
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save({"weights": {}})


def test_an_optional_csv_table_reads_as_none_until_it_exists_and_keeps_infinite_scores(tmp_path):
    path = tmp_path / "evaluation_scores.csv"
    dataset = OptionalCSVDataset(str(path))
    assert dataset.load() is None
    pd.DataFrame({"image_id": ["a", "b"], "physics_unknown_score": [0.5, np.inf]}).to_csv(path, index=False)
    table = dataset.load()
    assert list(table["image_id"]) == ["a", "b"] and np.isinf(table["physics_unknown_score"].iloc[1])
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save(table)
