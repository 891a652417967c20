"""Lineage extraction, best configuration, its file round trip and the population plot (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alloy_mtl.tuning.best import best_config_path, load_best_config
from alloy_mtl.tuning.lineage import best_configuration, extract_lineage, history_frame
from alloy_mtl.tuning.plot import population_progress
from tests.tuning.helpers import synthetic_log


@pytest.fixture
def frames():
    rows = synthetic_log()
    return history_frame(rows, "val_loss"), extract_lineage(rows)


def test_exploits_are_restores_from_another_trial_with_donor_step_and_new_config(frames):
    _, lineage = frames
    assert lineage[["trial_id", "donor_trial_id", "donor_epoch", "trial_epoch"]].values.tolist() == [
        ["B", "A", 2, 2],
        ["C", "B", 4, 3],
    ]
    first = lineage.iloc[0]
    assert (first.old_optimizer, first.donor_optimizer, first.new_optimizer) == ("adam", "adam", "sgd")
    assert (first.new_lr, first.new_weight_decay) == (5e-3, 2e-4)
    assert lineage["optimizer_switched"].tolist() == [True, False]
    assert first.restored_digest == "digest-A-2"


def test_best_configuration_is_the_best_last_value_with_its_ancestry(frames):
    history, lineage = frames
    best = best_configuration(
        history, lineage, arch="fnn", metric="val_loss", mode="min", settings={"seed": 0}
    )
    assert best["trial_id"] == "C"
    assert best["value"] == 0.55
    assert best["config"] == {"optimizer": "sgd", "lr": 4e-3, "weight_decay": 3e-4}
    assert best["initial_config"]["optimizer"] == "rmsprop"
    # C copied B at B's epoch 4, and B had copied A at A's epoch 2
    assert [(e["trial_id"], e["donor_trial_id"], e["donor_epoch"]) for e in best["lineage"]] == [
        ("B", "A", 2),
        ("C", "B", 4),
    ]
    assert best["population"] == {"trials": 3, "exploits": 2, "optimizer_switches": 1}
    worst = best_configuration(history, lineage, arch="fnn", metric="val_loss", mode="max", settings={})
    assert worst["trial_id"] == "A"


def test_best_configuration_survives_a_yaml_round_trip(frames, tmp_path: Path):
    history, lineage = frames
    best = best_configuration(
        history, lineage, arch="fnn", metric="val_loss", mode="min", settings={"seed": 0}
    )
    path = best_config_path(tmp_path, "fnn")
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(best, sort_keys=False))
    assert load_best_config(path) == best


def test_population_plot_is_written(frames, tmp_path: Path):
    history, lineage = frames
    figure = population_progress(history, lineage, "val_loss")
    target = tmp_path / "pbt_progress.png"
    figure.savefig(target)
    assert target.stat().st_size > 1000
    assert "2 exploits" in figure.axes[0].get_title()
