"""Pods logging at the same time to one tracking server, as a Kubeflow run's steps do (a real `mlflow server`)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

pytestmark = pytest.mark.slow

STEPS = 4
METRICS = 40
SUITE = "robustness.summary.worst_macro_ap"


def _step(uri: str, experiment_id: str, parent: str, name: str, folder: str) -> str:
    """One pod: a nested run, a metric history, an artifact and a model version of its own."""
    client = MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(experiment_id, run_name=name, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    for step in range(METRICS):
        client.log_metric(run_id, "train_loss", 1.0 / (step + 1), step=step)
    report = Path(folder) / f"{name}.md"
    report.write_text(f"# {name}\n")
    client.log_artifact(run_id, str(report), artifact_path="reports")
    model = client.create_logged_model(experiment_id, source_run_id=run_id, name=name)
    client.create_model_version(
        "alloy_mtl_concurrent", source=f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id
    )
    client.set_terminated(run_id)
    return run_id


def test_steps_logging_at_once_all_arrive_and_none_fails_on_a_locked_database(mlflow_server, tmp_path):
    uri = mlflow_server["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("alloy_mtl")
    parent = client.create_run(experiment_id, run_name="kfp-run").info.run_id
    client.create_registered_model("alloy_mtl_concurrent")
    with ProcessPoolExecutor(max_workers=STEPS) as pool:
        futures = [
            pool.submit(_step, uri, experiment_id, parent, f"model_{i}", str(tmp_path)) for i in range(STEPS)
        ]
        run_ids = [future.result(timeout=240) for future in futures]  # an error in a pod fails here
    for run_id in run_ids:
        assert len(client.get_metric_history(run_id, "train_loss")) == METRICS
        assert [a.path for a in client.list_artifacts(run_id, "reports")] == [
            f"reports/{client.get_run(run_id).info.run_name}.md"
        ]
    versions = client.search_model_versions("name = 'alloy_mtl_concurrent'")
    assert sorted(int(v.version) for v in versions) == list(range(1, STEPS + 1))  # no version lost or doubled
    assert len(list(mlflow_server["artifacts"].rglob("model_*.md"))) == STEPS  # stored by the server itself
    assert "database is locked" not in mlflow_server["log"].read_text()


def _training_run(client: MlflowClient, experiment_id: str, arch: str, score: float) -> str:
    """A finished parent run with one nested run holding a logged model and its suite score."""
    from alloy_mtl.tracking.promotion import MODEL_URI_TAG, PIPELINE_TAG

    parent = client.create_run(
        experiment_id, run_name="train_all", tags={PIPELINE_TAG: "train_all"}
    ).info.run_id
    run_id = client.create_run(experiment_id, run_name=arch, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    model = client.create_logged_model(experiment_id, source_run_id=run_id, name="model")
    client.set_tag(run_id, MODEL_URI_TAG, f"models:/{model.model_id}")
    client.log_metric(run_id, SUITE, score)
    for run in (run_id, parent):
        client.set_terminated(run)
    return parent


def _gate(uri: str, experiment_id: str, parent: str, delay_s: float, results, comparing, wait_for) -> None:  # noqa: PLR0917
    """One gate process: compares on the runs' recorded scores, taking ``delay_s`` to do it (as scoring the
    suite's images would); it signals ``comparing`` once it has read the champion and starts comparing, and
    finishes its comparison only after ``wait_for`` (when given): both gates read the champion before either
    moves it."""
    import time

    from alloy_mtl.tracking.promotion import GateSettings, PromotionError, run_gate
    from tests.tracking.test_promotion import recorded_comparison

    client = MlflowClient(uri, registry_uri=uri)
    compare = recorded_comparison(client, metric=SUITE)

    def slow(challenger, champion):
        comparing.set()
        if wait_for is not None:
            wait_for.wait(60)
        time.sleep(delay_s)
        return compare(challenger, champion)

    settings = GateSettings(model_name="alloy_mtl_race", metric=SUITE, parent_run_id=parent)
    try:
        results.put((parent, run_gate(client, settings, [experiment_id], compare=slow)["decision"]))
    except PromotionError as error:
        results.put((parent, f"refused: {error}"))


def test_two_gates_at_once_never_leave_the_worse_model_champion(mlflow_server):
    import multiprocessing

    from alloy_mtl.tracking.promotion import GateSettings, run_gate
    from tests.tracking.test_promotion import recorded_comparison

    uri = mlflow_server["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("alloy_mtl")
    first = _training_run(client, experiment_id, "resnet18", 0.60)
    run_gate(
        client, GateSettings(model_name="alloy_mtl_race", metric=SUITE, parent_run_id=first), [experiment_id]
    )  # v1
    better, best = (
        _training_run(client, experiment_id, arch, s) for arch, s in (("fnn", 0.70), ("resnet50", 0.90))
    )
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    best_comparing, better_comparing = context.Event(), context.Event()
    # both read v1 as champion; the best finishes first; the other, decided against v1, must not overwrite it
    gates = [
        context.Process(
            target=_gate, args=(uri, experiment_id, best, 0.2, results, best_comparing, better_comparing)
        ),
        context.Process(
            target=_gate, args=(uri, experiment_id, better, 3.0, results, better_comparing, None)
        ),
    ]
    for gate in gates:
        gate.start()
    for gate in gates:
        gate.join(timeout=120)
    outcome = dict(results.get(timeout=5) for _ in gates)
    assert outcome[best] == "promoted"
    assert outcome[better].startswith("refused:") and "moved from version 1" in outcome[better]
    champion = client.get_model_version_by_alias("alloy_mtl_race", "champion")
    assert client.get_run(champion.run_id).info.run_name == "resnet50"
    # rerun, the refused gate decides against the new champion and keeps it
    retry = run_gate(
        client,
        GateSettings(model_name="alloy_mtl_race", metric=SUITE, parent_run_id=better),
        [experiment_id],
        compare=recorded_comparison(client, metric=SUITE),
    )
    assert retry["decision"] == "kept_champion"
    assert client.get_model_version_by_alias("alloy_mtl_race", "champion").version == champion.version
