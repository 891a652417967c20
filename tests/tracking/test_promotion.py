"""The promotion gate against a real sqlite MLflow registry: the four cases, idempotence, a failing gate.

The comparison on the same images is replaced here by one built from each run's recorded score (a fixed +-0.01
interval about the difference); :mod:`tests.evaluation.test_paired_comparison` tests the comparison itself and
:mod:`tests.tracking.test_paired_gate` the registered models predicting the same images."""

from __future__ import annotations

import itertools

import pytest
from mlflow.entities import Metric, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.paired_comparison import PairedComparison
from alloy_mtl.tracking.promotion import (
    CHALLENGER,
    CHAMPION,
    FINGERPRINT_TAG,
    MODEL_URI_TAG,
    PIPELINE_TAG,
    GateSettings,
    PromotionError,
    gate_markdown,
    parse_gate_settings,
)
from alloy_mtl.tracking.promotion import run_gate as gate_with

METRIC = "test.classification.macro_ap"
_names = itertools.count()


@pytest.fixture
def gate(mlflow_backend):
    """A fresh registered-model name (one sqlite database for all tests) and its settings."""
    return GateSettings(model_name=f"alloy_mtl_test_{next(_names)}", metric=METRIC, min_margin=0.01)


def training_run(
    backend, scores: dict[str, float | None], pipeline: str = "train_all", fingerprint: str = "data-1"
) -> str:
    """A finished parent run with one nested run per model: a logged model and its test metric."""
    client, experiment_id = backend["client"], backend["experiment_id"]
    parent = client.create_run(experiment_id, run_name=pipeline, tags={PIPELINE_TAG: pipeline}).info.run_id
    for arch, score in scores.items():
        run_id = client.create_run(
            experiment_id, run_name=arch, tags={MLFLOW_PARENT_RUN_ID: parent, PIPELINE_TAG: pipeline}
        ).info.run_id
        model = client.create_logged_model(experiment_id, source_run_id=run_id, name="model")
        tags = [RunTag(MODEL_URI_TAG, f"models:/{model.model_id}"), RunTag(FINGERPRINT_TAG, fingerprint)]
        metrics = [] if score is None else [Metric(METRIC, score, 0, 0)]
        client.log_batch(run_id, metrics=metrics, tags=tags)
        client.set_terminated(run_id)
    client.set_terminated(parent)
    return parent


def recorded_comparison(client, metric: str = METRIC, half_width: float = 0.01):
    """A comparer that reads each version's recorded ``metric`` as its score on the shared images."""

    def compare(challenger, champion) -> PairedComparison:
        first, second = (client.get_run(v.run_id).data.metrics[metric] for v in (challenger, champion))
        difference = first - second
        return PairedComparison(
            challenger=first,
            champion=second,
            difference=difference,
            ci_low=difference - half_width,
            ci_high=difference + half_width,
            level=0.95,
            n_resamples=1000,
            conditions=("unseen_detector_1", "kv_x1.02"),
            n_images=200,
            n_specimens=70,
            challenger_worst_condition="kv_x1.02",
            champion_worst_condition="unseen_detector_1",
            alloy_ap_drop=dict.fromkeys(ALLOYS, 0.0),
        )

    return compare


def run_gate(client, settings, experiments, **kwargs):
    return gate_with(client, settings, experiments, compare=recorded_comparison(client), **kwargs)


def aliases(backend, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in backend["client"].get_registered_model(name).aliases.items()}


def registry_state(backend, name: str) -> tuple:
    client = backend["client"]
    versions = client.search_model_versions(f"name = '{name}'")
    return aliases(backend, name), sorted((v.version, tuple(sorted(v.tags.items()))) for v in versions)


def test_first_model_becomes_champion_and_rerun_changes_nothing(mlflow_backend, gate):
    parent = training_run(mlflow_backend, {"resnet18": 0.6, "fnn": 0.7, "vgg16": None})
    first = run_gate(mlflow_backend["client"], gate, [mlflow_backend["experiment_id"]])
    assert first["parent_run_id"] == parent
    assert (first["arch"], first["decision"], first["version"]) == ("fnn", "promoted", "1")
    assert "first model" in first["reason"]
    assert aliases(mlflow_backend, gate.model_name) == {CHAMPION: "1", CHALLENGER: "1"}
    tags = mlflow_backend["client"].get_model_version(gate.model_name, "1").tags
    assert tags["gate.decision"] == "promoted" and tags["gate.challenger_score"] == "0.7"

    before = registry_state(mlflow_backend, gate.model_name)
    again = run_gate(mlflow_backend["client"], gate, [mlflow_backend["experiment_id"]])
    assert again["changed"] is False and again["decision"] == "promoted"
    assert registry_state(mlflow_backend, gate.model_name) == before


def test_better_challenger_is_promoted_worse_is_not(mlflow_backend, gate):
    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    training_run(mlflow_backend, {"resnet18": 0.70})
    run_gate(client, gate, experiments)

    training_run(mlflow_backend, {"resnet34": 0.705})  # better, but by less than the margin
    kept = run_gate(client, gate, experiments)
    assert kept["decision"] == "kept_champion" and "lower end is not above the margin 0.01" in kept["reason"]
    assert aliases(mlflow_backend, gate.model_name) == {CHAMPION: "1", CHALLENGER: "2"}

    training_run(mlflow_backend, {"resnet50": 0.80})
    promoted = run_gate(client, gate, experiments)
    assert promoted["decision"] == "promoted" and promoted["champion_score"] == "0.7"
    assert aliases(mlflow_backend, gate.model_name) == {CHAMPION: "3", CHALLENGER: "3"}

    training_run(mlflow_backend, {"fnn": 0.5}, fingerprint="data-2")
    worse = run_gate(client, gate, experiments)
    assert worse["decision"] == "kept_champion"
    assert (worse["challenger_dataset"], worse["champion_dataset"]) == ("data-2", "data-1")
    assert aliases(mlflow_backend, gate.model_name) == {CHAMPION: "3", CHALLENGER: "4"}
    tags = client.get_model_version(gate.model_name, "4").tags
    assert (tags["gate.challenger_score"], tags["gate.champion_score"]) == ("0.5", "0.8")
    assert tags["gate.champion_version_before"] == "3"
    assert float(tags["gate.difference_ci_low"]) == pytest.approx(-0.31)
    assert float(tags["gate.difference_ci_high"]) == pytest.approx(-0.29)
    assert tags["gate.statistic"] == "worst macro AP over 2 conditions"
    assert {k for k in tags if k.startswith("gate.alloy_ap_drop.")} == {
        f"gate.alloy_ap_drop.{a}" for a in ALLOYS
    }
    report = gate_markdown(worse)
    assert "**kept_champion**" in report and "| difference | -0.3000 [-0.3100, -0.2900]" in report
    assert "| fnn (challenger) | 0.5000 |" in report


@pytest.mark.parametrize("failing_call", ["set_registered_model_alias", "set_model_version_tag"])
def test_gate_failing_half_way_never_leaves_the_registry_without_a_champion(
    mlflow_backend, gate, monkeypatch, failing_call
):
    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    training_run(mlflow_backend, {"resnet18": 0.6})
    run_gate(client, gate, experiments)
    training_run(mlflow_backend, {"resnet50": 0.9})

    original = getattr(type(client), failing_call)

    def flaky(self, name, alias_or_version, *args, **kwargs):
        if failing_call == "set_registered_model_alias" and alias_or_version != CHAMPION:
            return original(self, name, alias_or_version, *args, **kwargs)
        raise RuntimeError("injected registry failure")

    monkeypatch.setattr(type(client), failing_call, flaky)
    with pytest.raises(RuntimeError, match="injected"):
        run_gate(client, gate, experiments)
    assert CHAMPION in aliases(mlflow_backend, gate.model_name)  # old or new champion, never none

    monkeypatch.setattr(type(client), failing_call, original)
    finished = run_gate(client, gate, experiments)  # the rerun completes the interrupted decision
    assert finished["decision"] == "promoted"
    assert aliases(mlflow_backend, gate.model_name)[CHAMPION] == "2"
    assert client.get_model_version(gate.model_name, "2").tags["gate.decision"] == "promoted"


def test_no_candidate_and_bad_settings_are_named(mlflow_backend, gate):
    client = mlflow_backend["client"]
    empty = client.create_experiment(f"empty_{gate.model_name}")
    with pytest.raises(
        PromotionError, match=r"no finished parent run of pipeline\(s\) \['train_all', '__default__'\]"
    ):
        run_gate(client, gate, [empty])
    with pytest.raises(ValueError, match=r"registry.mode: got 'best'"):
        parse_gate_settings({"mode": "best"}, where="registry")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['metrics'\]"):
        parse_gate_settings({"metrics": "x"})
    with pytest.raises(ValueError, match=r"min_margin: got -1"):
        parse_gate_settings({"min_margin": -1})


def test_a_champion_is_never_replaced_without_a_comparison_on_the_same_images(mlflow_backend, gate):
    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    training_run(mlflow_backend, {"resnet18": 0.6})
    first = gate_with(client, gate, experiments)  # no champion yet: nothing to compare, no comparer needed
    assert first["decision"] == "promoted"
    training_run(mlflow_backend, {"resnet50": 0.9})
    with pytest.raises(PromotionError, match=r"cannot be compared with champion version 1: no images"):
        gate_with(client, gate, experiments)

    def failing(challenger, champion):
        raise ValueError("the models predicted different images of condition 'kv_x1.02'")

    with pytest.raises(
        PromotionError, match=r"comparing .* version 2 with champion version 1 failed .*kv_x1.02"
    ):
        gate_with(client, gate, experiments, compare=failing)
    assert aliases(mlflow_backend, gate.model_name)[CHAMPION] == "1"
    assert "gate.decision" not in client.get_model_version(gate.model_name, "2").tags
    assert run_gate(client, gate, experiments)["decision"] == "promoted"


def test_every_candidate_score_is_named(mlflow_backend, gate):
    training_run(mlflow_backend, {"resnet18": 0.6, "fnn": 0.7, "vgg16": None})
    decision = run_gate(mlflow_backend["client"], gate, [mlflow_backend["experiment_id"]])
    assert decision["candidate_scores"] == {"fnn": 0.7, "resnet18": 0.6, "vgg16": None}
    assert "| vgg16 | n/a |" in gate_markdown(decision)


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(ValueError) as error:
        parse_gate_settings(
            {"mode": "best", "alloy_tolerance": -0.1, "n_resamples": 10, "level": 1.5, "seed": "x"}
        )
    for key in ("mode", "alloy_tolerance", "n_resamples", "level", "seed"):
        assert f"registry.{key}: got" in str(error.value)


def test_the_gate_decides_on_the_suite_and_falls_back_only_where_no_model_has_it(mlflow_backend):
    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    suite = "robustness.summary.worst_macro_ap"
    settings = GateSettings(
        model_name=f"alloy_mtl_test_{next(_names)}", metric=suite, fallback_metrics=(METRIC,), min_margin=0.01
    )
    parent = training_run(mlflow_backend, {"fnn": 0.99, "resnet18": 0.90})  # test-split scores
    nested = client.search_runs(experiments, filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")
    runs = {r.info.run_name: r.info.run_id for r in nested}
    client.log_metric(runs["fnn"], suite, 0.45)  # best on its own detector, worst on the others
    client.log_metric(runs["resnet18"], suite, 0.88)
    decision = run_gate(client, settings, experiments)
    assert (decision["arch"], decision["metric"]) == ("resnet18", suite)

    training_run(mlflow_backend, {"resnet34": 0.95})  # a lab's data: no suite, only the test split
    fallback = run_gate(client, settings, experiments)
    assert (fallback["arch"], fallback["metric"]) == ("resnet34", METRIC)


def test_fallback_metrics_must_be_a_list_of_names():
    with pytest.raises(ValueError, match="fallback_metrics"):
        parse_gate_settings({"fallback_metrics": "test.classification.macro_ap"})


def test_a_registry_that_cannot_be_read_fails_the_gate_and_leaves_the_champion(
    mlflow_backend, gate, monkeypatch
):
    from mlflow.exceptions import MlflowException

    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    training_run(mlflow_backend, {"resnet18": 0.6})
    run_gate(client, gate, experiments)
    training_run(mlflow_backend, {"resnet50": 0.9})

    def unavailable(self, name, alias):
        raise MlflowException("database is locked", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(type(client), "get_model_version_by_alias", unavailable)
    with pytest.raises(
        PromotionError,
        match=r"cannot read the champion alias .*INTERNAL_ERROR: database is locked.*nothing was changed",
    ):
        run_gate(client, gate, experiments)
    monkeypatch.undo()
    assert aliases(mlflow_backend, gate.model_name)[CHAMPION] == "1"  # not promoted "without a champion"
    assert "gate.decision" not in client.get_model_version(gate.model_name, "2").tags
    assert run_gate(client, gate, experiments)["decision"] == "promoted"  # the rerun decides, against v1


def test_a_champion_moved_by_a_concurrent_gate_is_not_overwritten(mlflow_backend, gate, monkeypatch):
    client, experiments = mlflow_backend["client"], [mlflow_backend["experiment_id"]]
    training_run(mlflow_backend, {"resnet18": 0.6})
    run_gate(client, gate, experiments)
    training_run(mlflow_backend, {"vgg16": 0.95})
    run_gate(client, gate, experiments)  # v2 champion
    client.set_registered_model_alias(gate.model_name, CHAMPION, "1")  # back to v1 for the race below
    training_run(mlflow_backend, {"resnet50": 0.8})  # v3 beats v1 (0.6), not v2 (0.95)
    original = type(client).get_model_version_by_alias
    calls = itertools.count()

    def racing(self, name, alias):
        if next(calls) == 1:  # the re-read before the move: another gate promoted v2 meanwhile
            original(self, name, alias)
            self.set_registered_model_alias(name, CHAMPION, "2")
        return original(self, name, alias)

    monkeypatch.setattr(type(client), "get_model_version_by_alias", racing)
    with pytest.raises(PromotionError, match=r"moved from version 1 to 2 while version 3 was being decided"):
        run_gate(client, gate, experiments)
    monkeypatch.undo()
    assert aliases(mlflow_backend, gate.model_name)[CHAMPION] == "2"
    assert run_gate(client, gate, experiments)["decision"] == "kept_champion"  # against v2 now
