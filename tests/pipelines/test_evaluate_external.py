"""evaluate_external: every model, the ensembles and the physics limit scored on a lab's labelled folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.synthetic_lab import write_synthetic_lab
from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.evaluation.external import external_markdown, external_table, instrument_at_bounds
from alloy_mtl.physics.simulator import SimulationConfig
from alloy_mtl.pipelines.evaluate_external.nodes import read_external_folder
from alloy_mtl.pipelines.training import ARCHITECTURES
from tests.tracking.conftest import make_bundle

TINY = {
    "generation": {"n_images": 150, "image_size": 8, "images_per_specimen": 3, "min_images_per_class": 15}
}


def _predictions(seed: int, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = np.array(ALLOYS * (n // len(ALLOYS)))
    probs = rng.dirichlet(np.ones(len(ALLOYS)), size=len(truth))
    probs[np.arange(len(truth)), [ALLOYS.index(a) for a in truth]] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"image_id": [f"i{k}" for k in range(len(truth))], "alloy_true": truth})
    frame["specimen_id"] = [f"s{k // 2}" for k in range(len(truth))]
    frame["alloy_pred"] = [ALLOYS[i] for i in probs.argmax(axis=1)]
    for a, alloy in enumerate(ALLOYS):
        frame[f"prob_{alloy}"] = probs[:, a]
    return frame.assign(condition="external")


def test_the_table_has_one_row_per_model_with_intervals_and_per_alloy_ap():
    table = external_table({"fnn": _predictions(0), "physics_limit": _predictions(1)}, n_resamples=50)
    assert table["model"].tolist() == ["fnn", "physics_limit"]
    assert {f"ap_{a}" for a in ALLOYS} <= set(table.columns)
    assert (table["macro_ap_ci_low"] <= table["macro_ap"]).all() and (
        table["macro_ap"] <= table["macro_ap_ci_high"]
    ).all()
    markdown = external_markdown(table, "/lab/test", {"kv_scale": 1.04}, 0.95)
    assert "Warning" not in markdown
    assert "| fnn | " in markdown and "kv_scale 1.04" in markdown and "/lab/test" in markdown


def test_a_missing_folder_is_named():
    with pytest.raises(ValueError, match="external.path: required"):
        read_external_folder({"layout": "class_per_folder"})


def test_evaluate_external_scores_every_model_on_a_lab_folder(kedro_project, run_pipeline, tmp_path):
    data = kedro_project / "data"
    for seed, arch in enumerate(ARCHITECTURES):  # tiny FNNs stand in for the trained architectures
        TorchBundleDataset(str(data / f"06_models/{arch}/model.pt")).save(
            make_bundle(image_size=8, seed=seed)
        )
    selection = {"weights": {arch: 1.0 / len(ARCHITECTURES) for arch in ARCHITECTURES}}
    (data / "08_reporting").mkdir(parents=True)
    (data / "08_reporting/ensemble_selection.json").write_text(json.dumps(selection))
    lab = write_synthetic_lab(
        tmp_path / "lab",
        SimulationConfig(image_size=8),
        {"kv_scale": 1.01},
        n_calibration=1,
        test_per_alloy=6,
    )
    external = {"external": {"path": str(lab.test), "n_resamples": 20}}
    run_pipeline(kedro_project, "evaluate_external", {**TINY, **external})

    table = pd.read_csv(data / "08_reporting/external/comparison.csv")
    assert table["model"].tolist() == [*ARCHITECTURES, "ensemble_soft", "ensemble_selected", "physics_limit"]
    assert (table["n_images"] == 30).all()
    assert table.set_index("model").loc["physics_limit", "macro_ap"] > 0.5  # chance is ~0.2
    assert "# External evaluation" in (data / "08_reporting/external/comparison.md").read_text()
    assert "No model with fitted conformal sets" in (data / "08_reporting/external/conformal.md").read_text()
    assert (data / "07_model_output/fnn/external_predictions.csv").is_file()


def test_a_lab_that_trained_one_architecture_gets_its_row_and_the_physics_limit(
    kedro_project, run_pipeline, tmp_path
):
    data = kedro_project / "data"
    TorchBundleDataset(str(data / "06_models/fnn/model.pt")).save(make_bundle(image_size=8, seed=0))
    lab = write_synthetic_lab(
        tmp_path / "lab", SimulationConfig(image_size=8), {}, n_calibration=1, test_per_alloy=2
    )
    run_pipeline(
        kedro_project, "evaluate_external", {**TINY, "external": {"path": str(lab.test), "n_resamples": 0}}
    )
    table = pd.read_csv(data / "08_reporting/external/comparison.csv")
    assert table["model"].tolist() == ["fnn", "physics_limit"]


def test_an_instrument_on_the_edge_of_the_tolerances_is_flagged():
    tolerances = (("al_filter_mm", 0.7, 1.3), ("kv_scale", 0.98, 1.02))
    assert instrument_at_bounds({"kv_scale": 1.0, "al_filter_mm": 1.0}, tolerances) == []
    edges = instrument_at_bounds({"kv_scale": 1.02, "al_filter_mm": 0.9}, tolerances)
    assert edges == ["kv_scale = 1.02 (tolerance [0.98, 1.02])"]
    table = external_table({"fnn": _predictions(0)}, n_resamples=0)
    markdown = external_markdown(table, "/lab/test", {"kv_scale": 1.02}, 0.95, edges)
    assert (
        "edge of the declared tolerances** (kv_scale = 1.02" in markdown
        and "calibrate_instrument" in markdown
    )


def _with_sets(bundle: dict) -> dict:
    from alloy_mtl.mtl.models.multitask import load_model

    model = load_model(bundle)
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(5), 500)
    model.conformal.fit(
        probs,
        probs.argmax(axis=1),
        {"thickness": rng.uniform(0, 2, 500), "absorption": rng.uniform(0, 1, 500)},
    )
    return {**bundle, "state_dict": model.state_dict()}


def test_each_models_own_and_refitted_sets_are_measured_on_the_folder():
    from alloy_mtl.evaluation.external import external_conformal_markdown
    from alloy_mtl.mtl.models.multitask import load_model
    from alloy_mtl.pipelines.evaluate_external.nodes import check_external_conformal

    bundle = _with_sets(make_bundle(image_size=8, seed=0))
    frame = _predictions(3, n=200)
    rng = np.random.default_rng(3)
    for stem in ("thickness_mm", "absorption"):
        frame[f"{stem}_true"] = rng.uniform(1, 10, len(frame))
        frame[f"{stem}_pred"] = frame[f"{stem}_true"] + rng.normal(scale=0.5, size=len(frame))
    frame.loc[:9, "absorption_true"] = np.nan  # not every specimen's absorption is known
    external = {"path": "/lab/test", "conformal_folds": 4}
    record = check_external_conformal(bundle, frame, external, {})
    assert record["class_counts"] == dict.fromkeys(ALLOYS, 40) and record["check"]["folds"] == 4
    own = load_model(bundle).conformal.sets(frame[[f"prob_{a}" for a in ALLOYS]].to_numpy())
    for i, alloy in enumerate(ALLOYS):
        rows = (frame["alloy_true"] == alloy).to_numpy()
        assert record["check"]["per_class"][alloy]["shipped_coverage"] == pytest.approx(own[rows, i].mean())
    assert record["check"]["intervals"]["absorption"]["n"] == 190
    assert record["advice"].startswith("fewer than 200 labelled images")

    assert check_external_conformal(make_bundle(image_size=8, seed=0), frame, external, {}) == {}  # no sets
    assert check_external_conformal(bundle, frame.iloc[:30], external, {}) == {}  # 6 of an alloy: too few
    assert check_external_conformal({}, frame, external, {}) == {}  # not trained
    markdown = external_conformal_markdown({"fnn": record, "vgg16": {}, "resnet18": record}, "/lab/test")
    assert (
        markdown.count("| fnn | ") == 2 and "| vgg16 |" not in markdown and "| resnet18 | refit |" in markdown
    )
    assert "1050 40, 2017 40" in markdown and "**Note:** fewer than 200" in markdown
    assert "No model with fitted conformal sets" in external_conformal_markdown({"fnn": {}}, "/lab/test")
