"""train_<arch> with start_from_pbt: optimizer, lr and weight decay come from pbt_best.yml, or it fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alloy_mtl.config import ParameterError
from alloy_mtl.data.store import XrayData
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.pipelines.training.nodes import train_architecture
from alloy_mtl.tuning.best import MissingBestConfigError, best_config_path, start_from_best
from tests.mtl.test_experiment import _data, _params

BEST = {
    "arch": "fnn",
    "metric": "val_loss",
    "value": 0.5,
    "config": {"optimizer": "rmsprop", "lr": 0.0042, "weight_decay": 0.00031},
}


def _write(root: Path, content: dict, arch: str = "fnn") -> Path:
    path = best_config_path(root, arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content))
    return path


LAB = {"kind": "csv_folder", "path": "lab"}  # the conformal sets on the validation split: nothing simulated


def _training(root: Path) -> tuple[dict, dict]:
    params = _params(epochs=1, checkpoint_root=str(root), resume=False)
    training = {k: v for k, v in params.items() if k not in {"arch", "optimizer", "lr", "weight_decay"}}
    options = {"arch": "fnn", "optimizer": "sgd", "lr": 0.01, "weight_decay": 0.0, "start_from_pbt": True}
    return training, options


def test_the_training_node_trains_with_the_tuned_configuration(tmp_path: Path):
    _write(tmp_path, BEST)
    images, metadata = _data(8)
    training, options = _training(tmp_path)
    _, history, _, summary = train_architecture(XrayData(images, metadata), training, options, LAB, {})
    resolved = summary["params"]
    assert (resolved["optimizer"], resolved["lr"], resolved["weight_decay"]) == ("rmsprop", 0.0042, 0.00031)
    assert history["lr"].iloc[0] == pytest.approx(0.0042)


def test_switched_on_without_the_file_fails_naming_it(tmp_path: Path):
    images, metadata = _data(4)
    training, options = _training(tmp_path)
    with pytest.raises(MissingBestConfigError) as err:
        train_architecture(XrayData(images, metadata), training, options, LAB, {})
    message = str(err.value)
    assert str(tmp_path / "fnn" / "pbt_best.yml") in message
    assert "kedro run --pipeline tune_fnn" in message


def test_switched_off_keeps_the_table_values_even_with_a_file(tmp_path: Path):
    _write(tmp_path, BEST)
    params = parse_training_params(_params(checkpoint_root=str(tmp_path)))
    assert start_from_best(params) is params


def test_a_file_of_another_architecture_or_with_bad_values_is_refused(tmp_path: Path):
    params = parse_training_params(_params(checkpoint_root=str(tmp_path), start_from_pbt=True))
    _write(tmp_path, {**BEST, "arch": "resnet18"})
    with pytest.raises(ValueError, match="tuned for 'resnet18', not 'fnn'"):
        start_from_best(params)
    path = _write(tmp_path, {**BEST, "config": {**BEST["config"], "lr": -1}})
    with pytest.raises(ParameterError, match=rf"{path}: config\.lr"):
        start_from_best(params)
