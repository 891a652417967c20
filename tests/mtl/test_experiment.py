"""The Kedro-free training recipe: targets, splits, resume policy, predictions contract, model bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.labelled_prediction import task_targets
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.checkpoint_io import CheckpointMismatchError

TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "logit_adjusted"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
}


def _data(n_per_split: int = 10) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val", "test"):
        for i in range(n_per_split):
            rows.append(
                {
                    "image_id": f"{split}-{i}",
                    "specimen_id": f"{split}-{i}",
                    "alloy": ALLOYS[i % 5],
                    "thickness_mm": np.nan if i == 3 else 1.0 + i,
                    "split": split,
                }
            )
    metadata = pd.DataFrame(rows)
    images = rng.random((len(metadata), 1, 16, 16)).astype(np.float16)
    return images, metadata


def _params(**overrides) -> dict:
    params = {
        "arch": "fnn",
        "optimizer": "sgd",
        "lr": 0.01,
        "weight_decay": 0.0,
        "activation": "relu",
        "epochs": 2,
        "batch_size": 8,
        "seed": 3,
        "tasks": TASKS,
        "progress_bar": False,
        "model_options": {"fnn_pool_size": 8, "fnn_hidden": [16]},
    }
    return params | overrides


def test_task_targets_encode_classes_and_keep_missing_regression_labels():
    _, metadata = _data(5)
    targets = task_targets(metadata, parse_tasks(TASKS))
    assert targets["alloy"][:5].tolist() == [0, 1, 2, 3, 4]
    assert np.isnan(targets["thickness"][3])


def test_task_targets_name_the_missing_column_and_unknown_alloys():
    _, metadata = _data(5)
    with pytest.raises(ValueError, match="target column 'thickness_mm'"):
        task_targets(metadata.drop(columns="thickness_mm"), parse_tasks(TASKS))
    metadata.loc[2, "alloy"] = "6061"
    with pytest.raises(ValueError, match=r"labels \['6061'\]"):
        task_targets(metadata, parse_tasks(TASKS))


def test_training_result_follows_the_evaluation_contract_and_bundle_rebuilds_the_model(tmp_path):
    images, metadata = _data()
    result = train_from_params(images, metadata, _params(), tmp_path / "ckpt")
    predictions = result.predictions
    assert len(predictions) == 10
    assert {"image_id", "alloy_true", "alloy_pred", "thickness_mm_true", "thickness_mm_pred"} <= set(
        predictions
    )
    probs = predictions[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert len(result.history) == 2
    model = load_model(result.bundle)
    with torch.no_grad():
        out = model.predict(torch.from_numpy(images[-10:].astype(np.float32)))
    np.testing.assert_allclose(out["alloy"].softmax(1).numpy(), probs, rtol=1e-4, atol=1e-5)


def test_same_seed_gives_identical_predictions(tmp_path):
    images, metadata = _data()
    first = train_from_params(images, metadata, _params(), None).predictions
    second = train_from_params(images, metadata, _params(), None).predictions
    pd.testing.assert_frame_equal(first, second)


def test_incompatible_checkpoint_is_set_aside_under_auto_and_refused_under_true(tmp_path):
    images, metadata = _data()
    ckpt = tmp_path / "ckpt"
    train_from_params(images, metadata, _params(), ckpt)
    other = _params(optimizer="adam", lr=1e-3)
    with pytest.raises(CheckpointMismatchError):
        train_from_params(images, metadata, other | {"resume": True}, ckpt)
    train_from_params(images, metadata, other | {"resume": "auto"}, ckpt)
    stale = list(tmp_path.glob("ckpt.stale-*"))
    assert len(stale) == 1 and (stale[0] / "last.pt").is_file()
    assert (ckpt / "last.pt").is_file()


def test_bad_resume_and_progress_values_are_named():
    images, metadata = _data()
    with pytest.raises(ValueError, match="training.resume"):
        train_from_params(images, metadata, _params(resume="sometimes"), None)
    with pytest.raises(ValueError, match="training.progress_bar"):
        train_from_params(images, metadata, _params(progress_bar="loud"), None)


def test_rerun_of_a_finished_training_resumes_to_the_same_model(tmp_path):
    images, metadata = _data()
    first = train_from_params(images, metadata, _params(), tmp_path / "ckpt")
    again = train_from_params(images, metadata, _params(), tmp_path / "ckpt")
    pd.testing.assert_frame_equal(first.history, again.history)
    pd.testing.assert_frame_equal(first.predictions, again.predictions)


def test_changed_data_or_settings_never_resume_a_stale_checkpoint(tmp_path):
    images, metadata = _data()
    ckpt = tmp_path / "ckpt"
    first = train_from_params(images, metadata, _params(), ckpt)
    other_data = metadata.copy()
    other_data.loc[0, "thickness_mm"] = 9.0
    other_data.loc[0, "image_id"] = "renamed"
    with pytest.raises(CheckpointMismatchError, match="run.data"):
        train_from_params(images, other_data, _params(resume=True), ckpt)
    with pytest.raises(CheckpointMismatchError, match="run.settings"):
        train_from_params(images, metadata, _params(resume=True, lr=0.02), ckpt)
    longer = train_from_params(images, metadata, _params(resume=True, epochs=3), ckpt)
    assert len(longer.history) == 3
    pd.testing.assert_frame_equal(longer.history.iloc[:2], first.history)


def test_diverging_training_stops_with_a_clear_error():
    from alloy_mtl.mtl.training.meter import TrainingDivergedError

    images, metadata = _data()
    with pytest.raises(TrainingDivergedError, match="epoch 1: training diverged"):
        train_from_params(images, metadata, _params(lr=1e12, epochs=3), None)


def test_divergence_under_cpu_bf16_names_the_kernel_fault_and_the_fix():
    from alloy_mtl.mtl.training.meter import TrainingDivergedError, raise_if_diverged

    diverged = {"train_loss": float("nan"), "alloy_loss": float("nan"), "thickness_loss": 0.5}
    with pytest.raises(TrainingDivergedError, match=r"non-finite \['alloy_loss', 'train_loss'\]") as plain:
        raise_if_diverged(2, diverged)
    assert "amp" not in str(plain.value)
    with pytest.raises(TrainingDivergedError, match="set training.amp: false first"):
        raise_if_diverged(2, diverged, cpu_bf16=True)
    raise_if_diverged(2, {"train_loss": 0.1}, cpu_bf16=True)  # a finite loss passes


def test_a_task_without_any_training_label_is_named_with_the_fix():
    images, metadata = _data()
    metadata["thickness_mm"] = np.nan
    with pytest.raises(ValueError, match=r"task 'thickness': no training image has a 'thickness_mm' label"):
        train_from_params(images, metadata, _params(), None)
    single_task = _params(tasks={**TASKS, "thickness": {**TASKS["thickness"], "enabled": False}})
    result = train_from_params(images, metadata, single_task, None)
    assert "thickness_mm_pred" not in result.predictions
    assert list(result.bundle["tasks"]) == ["alloy"]
    with pytest.raises(ValueError, match="every task is disabled"):
        train_from_params(
            images, metadata, _params(tasks={"alloy": {**TASKS["alloy"], "enabled": False}}), None
        )


def test_with_class_balanced_batches_the_loss_corrects_for_a_uniform_prior_not_the_split_tail():
    from alloy_mtl.mtl.recipe import prepare_experiment

    images, metadata = _data(n_per_split=20)
    train = np.flatnonzero(metadata["split"].to_numpy() == "train")
    metadata.loc[train, "alloy"] = ["6082"] * 14 + ["5083"] * 3 + ["1050", "7075", "2017"]  # a long tail
    natural = prepare_experiment(images, metadata, _params()).losses["alloy"].log_prior
    balanced = (
        prepare_experiment(images, metadata, _params(class_balanced_sampler=True)).losses["alloy"].log_prior
    )
    assert float(natural.max() - natural.min()) == pytest.approx(np.log(14), rel=1e-5)
    torch.testing.assert_close(balanced, torch.full((5,), -float(np.log(5))))


def test_the_summary_names_the_delivered_epoch_and_its_validation_errors():
    images, metadata = _data()
    result = train_from_params(
        images, metadata, _params(epochs=4, monitor={"metric": "val_alloy_acc", "mode": "max"}), None
    )
    history, summary = result.history, result.summary
    best = int(history.loc[history["val_alloy_acc"].idxmax(), "epoch"])  # the first best epoch
    assert summary["delivered_epoch"] == best
    row = history.set_index("epoch").loc[best]
    assert summary["val_mae"] == {"thickness_mm": pytest.approx(float(row["val_thickness_mae"]))}
