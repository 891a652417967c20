"""A tiny population on Ray Tune: exploits really copy the donor's weights, and optimizer switches train on.

Slow (local Ray start, four members): ``pytest -m slow tests/tuning``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.training.checkpoint_io import load_checkpoint
from alloy_mtl.tuning.params import TuningParams
from tests.mtl.test_experiment import _data, _params

pytest.importorskip("ray.tune", reason='PBT needs the tune extra: pip install -e ".[tune]"')


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory):
    from alloy_mtl.tuning.population import run_pbt

    images, metadata = _data(16)  # 48 images of 1 x 16 x 16 px
    params = parse_training_params(_params(batch_size=8))
    # aggressive on purpose: decide every epoch, half the population copies the other half, resample always
    tuning = TuningParams(
        population_size=4,
        max_epochs=5,
        checkpoints_to_keep=None,  # the test reads every donor checkpoint after the run
        perturbation_interval=1,
        quantile_fraction=0.5,
        resample_probability=1.0,
        cpus_per_trial=0.5,
        num_cpus=2,
        time_budget_s=900,  # a safety net only: max_epochs ends it (~60 s idle); a loaded CI machine needs more
        seed=0,
    )
    storage = tmp_path_factory.mktemp("pbt")
    return run_pbt(images, metadata, params, tuning, name="tiny", storage_dir=storage)


@pytest.mark.slow
def test_a_tiny_population_exploits_copies_weights_and_switches_optimizers(outcome):
    """(a) every exploit restored exactly the donor checkpoint's tensors; (b) a member switched optimizer
    and trained on; the best configuration names a member and its lineage."""
    from alloy_mtl.tuning.trainable import CHECKPOINT_FILE, state_digest

    history, lineage, best = outcome.history, outcome.lineage, outcome.best
    assert len(lineage) >= 1, history.to_string()
    for event in lineage.itertuples():
        assert event.donor_trial_id != event.trial_id
        checkpoint = Path(event.checkpoint_path)
        assert event.donor_trial_id in checkpoint.parent.name  # a checkpoint of the donor's trial folder
        donor = load_checkpoint(checkpoint / CHECKPOINT_FILE)
        assert donor["trial_id"] == event.donor_trial_id
        assert donor["trainer"]["epoch"] == event.donor_epoch
        # the weights the member digested right after restoring are the tensors of the donor's checkpoint
        assert state_digest(donor["trainer"]["model"]) == event.restored_digest

    switches = lineage[lineage["optimizer_switched"]]
    assert len(switches) >= 1, lineage.to_string()
    event = switches.iloc[0]
    assert event.donor_optimizer != event.new_optimizer
    after = history[(history["trial_id"] == event.trial_id) & (history["seq"] >= event.seq)]
    # the first epoch after the switch continues from the donor's epoch, trained with the new optimizer
    assert after.iloc[0]["epoch"] == event.donor_epoch + 1
    assert after.iloc[0]["optimizer"] == event.new_optimizer
    assert math.isfinite(after.iloc[0]["val_loss"])

    assert best["trial_id"] in set(history["trial_id"])
    assert best["population"] == {
        "trials": 4,
        "exploits": len(lineage),
        "optimizer_switches": len(switches),
    }
