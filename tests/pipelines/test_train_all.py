"""`train_all` end to end on a tiny generated dataset: every architecture trains and is reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import open_store
from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.mtl.models.conditioning import attach_settings
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.pipelines.training import ARCHITECTURES
from alloy_mtl.runner import ModelParallelRunner

TINY = {
    "generation": {"n_images": 200, "image_size": 32, "min_images_per_class": 18, "images_per_specimen": 3},
    "training": {
        "epochs": 1,
        "batch_size": 16,
        "max_train_images": 48,
        "progress_bar": False,
        "conformal_images": 100,
    },
    "evaluation": {
        "evaluation_set": {"n_images": 60},
        "ood": {"images_per_material": 4},
        "bootstrap": {"n_resamples": 50},
        "ensemble_selection": {"n_images": 60, "units": 2},
        "robustness": {"n_images": 60, "n_resamples": 20},
    },
    "unknown_materials": {
        "known_images": 100,
        "images_per_designation": 10,
        "reference_images": 100,
        "batch_size": 50,
        "instrument_sessions": 2,  # 8 sessions need 120 known images (a specimen per alloy each)
    },
    # the architectures whose CPU default sets its own epochs (conf/base) get the tiny budget too
    **{
        arch: {"train_options": {"epochs": 1}}
        for arch in ("resnet18", "resnet50", "vgg16", "efficientnet_b0", "fnn")
    },
}


def _assert_physics_unknown_beside_the_models(data) -> None:
    """The physics unknown score measured on the evaluation's sets, and what each model answers with it beside."""
    report = json.loads((data / "08_reporting/unknown_materials/ood_report.json").read_text())
    assert report["evaluated"] and {"near", "far"} <= set(report["families"])
    answers = json.loads((data / "08_reporting/unknown_materials/answers_with_physics.json").read_text())
    assert set(answers) == set(ARCHITECTURES)
    assert all(a["known_rejected"] >= a["physics_known_rejected"] for a in answers.values())
    comparison = (data / "08_reporting/comparison.md").read_text()
    assert "| physics unknown score |" in comparison and "| resnet18 + physics |" in comparison


@pytest.mark.slow
def test_train_all_produces_models_histories_reports_and_comparison(kedro_project, run_pipeline, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the embedded default: mlflow.db at the project root
    # the runner `kedro run` uses here: two models at a time in threads, each logging to its own MLflow run
    run_pipeline(kedro_project, "train_all", TINY, runner=ModelParallelRunner(max_workers=2))

    data = kedro_project / "data"
    summary = json.loads((data / "08_reporting/unknown_materials/summary.json").read_text())
    assert summary["fitted"] and summary["n_known"] == 100 and summary["image_size"] == 32
    assert (data / "06_models/physics_unknown_score.pkl").stat().st_size > 0
    for arch in ARCHITECTURES:
        bundle = TorchBundleDataset(str(data / f"06_models/{arch}/model.pt")).load()
        model = load_model(bundle)
        images = torch.full((2, 3, 32, 32), 0.5)
        if model.instrument_keys:  # a conditioned model reads its instrument as trailing planes
            typical = model.conditioning.typical()
            settings = torch.tensor([[typical[key] for key in model.instrument_keys]] * 2)
            images = attach_settings(images, settings)
        outputs = model.predict(images)
        assert outputs["alloy"].shape == (2, 5)
        history = pd.read_csv(data / f"07_model_output/{arch}/history.csv")
        assert {"train_alloy_loss", "val_alloy_loss", "train_alloy_acc", "val_alloy_acc"} <= set(
            history.columns
        )
        metrics = json.loads((data / f"08_reporting/{arch}/metrics.json").read_text())
        assert set(metrics["classification"]["ap"]) == {"1050", "2017", "5083", "6082", "7075"}
        assert (
            metrics["calibration"]["alloy"]["temperature"] > 0
        )  # fitted on validation, carried in the model
        assert model.calibration.temperatures()["alloy"] == pytest.approx(
            metrics["calibration"]["alloy"]["temperature"]
        )
        # the unknown-material score is fitted on the training split and referenced on validation, in the model
        assert model.ood.fitted and metrics["ood"]["fit"]["n_train"] > 0
        assert model.ood.threshold(0.01) == pytest.approx(metrics["ood"]["fit"]["val_score_q99"], rel=1e-4)
        assert metrics["ood"]["threshold"] == pytest.approx(metrics["ood"]["fit"]["val_score_q99"], rel=1e-4)
        assert set(metrics["ood"]["families"]) == {"near", "far", "open_beam", "blank", "dark"}
        # conformal sets fitted on the generated set (balanced: 20 images per alloy) travel with the model; their
        # coverage is measured per alloy
        assert model.conformal.fitted
        fitted = json.loads((data / f"07_model_output/{arch}/training_summary.json").read_text())["conformal"]
        assert fitted["fitted_on"] == "generated" and fitted["class_counts"] == [20] * 5
        assert set(metrics["conformal"]["evaluation_set"]["per_class"]) == {
            "1050",
            "2017",
            "5083",
            "6082",
            "7075",
        }
        for figure in ("pr_curves", "roc_curves", "confusion_matrix", "loss_curves", "scatter_thickness"):
            assert (data / f"08_reporting/{arch}/{figure}.png").stat().st_size > 1000

    table = pd.read_csv(data / "08_reporting/comparison.csv")
    ensembles = {"ensemble_soft", "ensemble_hard", "ensemble_selected"}
    assert set(ARCHITECTURES) | ensembles | {"physics_limit"} == set(table["model"])
    selection = json.loads((data / "08_reporting/ensemble_selection.json").read_text())
    assert selection["split"] == "generated_validation" and set(selection["weights"]) == set(ARCHITECTURES)
    assert selection["n_images"] == 60
    assert "`ensemble_selected` weighs the models" in (data / "08_reporting/comparison.md").read_text()
    assert "## Unknown materials" in (data / "08_reporting/comparison.md").read_text()
    _assert_physics_unknown_beside_the_models(data)
    assert (
        "## Conformal sets and intervals (large evaluation set)"
        in (data / "08_reporting/comparison.md").read_text()
    )
    assert set(table["evaluated_on"]) == {"test", "evaluation_set"}
    large = table[table["evaluated_on"] == "evaluation_set"].set_index("model")
    # a percentile interval need not contain the point estimate, but it is a proper, finite interval
    assert (large["macro_ap_ci_low"] < large["macro_ap_ci_high"]).all()
    assert "Large evaluation set (60 images" in (data / "08_reporting/comparison.md").read_text()
    assert (data / "08_reporting/comparison.md").read_text().count("resnet18") >= 2
    assert (data / "08_reporting/ap_heatmap.png").stat().st_size > 1000

    check_mlflow(kedro_project)
    check_promotion_rerun_and_inference(kedro_project, run_pipeline)
    check_gate_against_a_champion(kedro_project, run_pipeline)


def check_mlflow(project):
    """mlflow.db at the project root: the parent run, one nested run per model, metrics, artifacts, aliases."""
    assert (project / "mlflow.db").is_file() and not (project / "mlruns").exists()
    bundles = list((project / "mlartifacts/alloy_mtl/models").glob("m-*/artifacts/artifacts/bundle.pt"))
    assert len(bundles) == len(ARCHITECTURES)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("alloy_mtl")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.data.tags["alloy_mtl.pipeline"] == "train_all"
    assert parent.data.params["training.epochs"] == "1"
    model_files = list((project / "mlartifacts/alloy_mtl/models").glob("m-*/artifacts/MLmodel"))
    for model_file in model_files:  # every model records the instrument its data were simulated with
        assert yaml.safe_load(model_file.read_text())["metadata"]["instrument"]["kv"] == [40.0, 50.0, 80.0]
    assert {
        "kedro.env",
        "git.commit",
        "torch.version",
        "kedro.version",
        "alloy_mtl.dataset_fingerprint",
    } <= set(parent.data.tags)
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison", "data", "data_docs", "registry"} <= top
    comparison = {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")}
    assert {"comparison/ensemble_selection.json", "comparison/answers_with_physics.json"} <= comparison
    unknown = {a.path for a in client.list_artifacts(parent.info.run_id, "unknown_materials")}
    assert {"unknown_materials/summary.json", "unknown_materials/ood_report.json"} <= unknown
    assert "unknown_materials.families.near.auroc" in parent.data.metrics
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent.info.run_id
    }
    assert set(children) == set(ARCHITECTURES) | {
        "ensemble_soft",
        "ensemble_hard",
        "ensemble_selected",
        "physics_limit",
    }
    for name, run in children.items():
        assert run.info.status == "FINISHED", name
        assert "test.classification.macro_ap" in run.data.metrics, name
        assert "evaluation.ece_bins" in run.data.params, name
        assert (
            run.data.tags["alloy_mtl.dataset_fingerprint"]
            == parent.data.tags["alloy_mtl.dataset_fingerprint"]
        )
    for arch in ARCHITECTURES:
        run = children[arch]
        epochs = len(pd.read_csv(project / f"data/07_model_output/{arch}/history.csv"))
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert steps == list(range(1, epochs + 1)), arch
        assert {"lr", "val_alloy_acc", "weight_alloy", "conflict_share", "grad_cos_alloy__thickness"} <= set(
            run.data.metrics
        ), arch
        assert run.data.params["arch"] == arch and run.data.tags["alloy_mtl.model_uri"].startswith(
            "models:/m-"
        )
        assert {"figures", "metrics.json", "history.csv"} <= {
            a.path for a in client.list_artifacts(run.info.run_id)
        }
    aliases = client.get_registered_model("alloy_mtl").aliases
    assert {"champion", "challenger"} <= set(aliases)
    champion = client.get_model_version_by_alias("alloy_mtl", "champion")
    assert champion.tags["gate.decision"] == "promoted"


def check_promotion_rerun_and_inference(project, run_pipeline):
    """The gate alone over the logged runs changes nothing; inference predicts a folder with a bad file."""
    run_pipeline(project, "promotion")
    decision = json.loads((project / "data/08_reporting/registry_decision.json").read_text())
    assert decision["changed"] is False

    folder = project / "new_images"
    folder.mkdir()
    store = open_store(project / "data/05_model_input/xray")
    counts = np.round(np.asarray(store.images[:2], dtype=np.float32).clip(0, 1) * 65535).astype(np.uint16)
    for i, image in enumerate(counts):
        tifffile.imwrite(folder / f"good_{i}.tif", image)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(Exception, match=r"1 of 3 file\(s\) could not be predicted"):
        run_pipeline(project, "inference", {"inference": {"input": str(folder)}})
    predictions = pd.read_csv(
        project / "data/07_model_output/inference/predictions.csv", dtype={"alloy": str}
    )
    assert list(predictions["file"]) == ["broken.png", "good_0.tif", "good_1.tif"]
    good = predictions.iloc[1:]
    # a one-epoch model on 48 images may call its own training images unknown: the wiring is checked here
    assert good["error"].isna().all() and set(good["alloy"].astype(str)) <= {*map(str, ALLOYS), "unknown"}
    assert np.isfinite(good["ood_score"]).all() and np.isfinite(good["ood_threshold"]).all()
    assert (good["alloy_set_size"] >= 0).all() and (
        good["thickness_mm_low"] <= good["thickness_mm_high"]
    ).all()
    np.testing.assert_allclose(good.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-5)
    assert (good["thickness_mm"] > 0).all()
    assert "unreadable or corrupt" in predictions.loc[0, "error"]
    # two usable images are too few for the drift alarm's batch: checked, reported, nothing alarmed
    assert "No batch checked" in (project / "data/08_reporting/inference/drift.md").read_text()
    # and too few for the physics unknown score's instrument fit: not applied, the models answer alone
    assert good["physics_unknown_score"].isna().all()


def check_gate_against_a_champion(project, run_pipeline):
    """The gate alone, its challenger facing another registered model as champion: both registered versions
    predict the suite's images, regenerated, so each one's score is the one the suite recorded for it."""
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    name = "alloy_mtl"
    challenger = client.get_model_version_by_alias(name, "champion")
    parent = client.get_run(challenger.run_id).data.tags[MLFLOW_PARENT_RUN_ID]
    rival = next(
        run
        for run in client.search_runs(
            [client.get_run(parent).info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'",
        )
        if "alloy_mtl.model_uri" in run.data.tags and run.info.run_id != challenger.run_id
    )
    model_uri = rival.data.tags["alloy_mtl.model_uri"]
    other = client.create_model_version(
        name, source=model_uri, run_id=rival.info.run_id, model_id=model_uri.removeprefix("models:/")
    )
    client.set_registered_model_alias(name, "champion", other.version)
    for key in list(challenger.tags):  # the challenger as if its gate had not decided yet
        if key.startswith("gate."):
            client.delete_model_version_tag(name, challenger.version, key)
    # the same parameters as train_all: the gate regenerates the suite from them
    run_pipeline(project, "promotion", {**TINY, "registry": {"parent_run_id": parent, "n_resamples": 100}})

    decision = json.loads((project / "data/08_reporting/registry_decision.json").read_text())
    assert decision["changed"] is True and decision["champion_version_before"] == str(other.version)
    suite = "robustness.summary.worst_macro_ap"
    assert float(decision["challenger_score"]) == pytest.approx(
        client.get_run(challenger.run_id).data.metrics[suite]
    )
    assert float(decision["champion_score"]) == pytest.approx(rival.data.metrics[suite])
    gated = decision["conditions"].split(",")
    assert "same_detector" not in gated and {"unseen_detector_1", "kv_x1.02"} <= set(gated)
    assert decision["n_images"] == str(60 * len(gated))
    assert (
        float(decision["difference_ci_low"])
        <= float(decision["difference"])
        <= float(decision["difference_ci_high"])
    )
    now = str(client.get_model_version_by_alias(name, "champion").version)
    assert now == str(challenger.version if decision["decision"] == "promoted" else other.version)
    report = (project / "data/08_reporting/registry_decision.md").read_text()
    assert f"against champion version {other.version}, on the same images" in report
