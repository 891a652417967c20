"""Promotion gate: register the best model of a training run as the ``challenger`` and promote it to
``champion`` only when it beats the current champion on the same held-out test metric.

Guarantees:

* the first model ever registered becomes champion;
* a challenger moves ``champion`` only when it wins by at least ``min_margin`` (ties never move it);
* the decision, both scores and the reason are written as tags of the challenger version and logged;
* idempotent: a second run over the same training run registers nothing new and changes no alias or tag;
* never without a champion: the champion alias is only ever *moved* (one atomic alias update), never
  deleted, and it is moved before the decision tags are written, so a gate failing half-way leaves the
  old or the new champion in place and a rerun completes the tags.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_URI_TAG = "alloy_mtl.model_uri"
"""Tag of a nested run that logged a servable model (its ``models:/m-<id>`` URI)."""
PIPELINE_TAG = "alloy_mtl.pipeline"
SOURCE_RUN_TAG = "alloy_mtl.source_run_id"
FINGERPRINT_TAG = "alloy_mtl.dataset_fingerprint"
GATE_PREFIX = "gate."
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class PromotionError(RuntimeError):
    """No candidate model to register, or the model registry is in a state the gate cannot decide on."""


def _absent(error: MlflowException) -> bool:
    """Whether ``error`` says definitely that the registered model or alias does not exist (a missing model is
    RESOURCE_DOES_NOT_EXIST; a missing alias on a SQL store is INVALID_PARAMETER_VALUE "alias ... not found").
    Anything else (a locked database, a 503, no permission) is not an answer."""
    if error.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return error.error_code == "INVALID_PARAMETER_VALUE" and bool(
        re.search(r"alias \S+ not found", str(error.message))
    )


def _unreadable(what: str, error: MlflowException) -> PromotionError:
    return PromotionError(
        f"gate: cannot read {what} from the model registry ({error.error_code}: {error.message}); nothing was "
        "changed (the champion stays as it was); rerun the gate once the registry answers"
    )


@dataclass(frozen=True)
class GateSettings:
    """``parameters_registry.yml`` ``registry``: the registered model and the gate's rule (validated by
    :func:`parse_gate_settings`)."""

    model_name: str = "alloy_mtl"
    metric: str = "test.classification.macro_ap"
    mode: str = "max"
    min_margin: float = 0.005
    parent_run_id: str | None = None
    from_pipelines: tuple[str, ...] = ("train_all", "__default__")
    fallback_metrics: tuple[str, ...] = ()


def parse_gate_settings(params: Mapping[str, Any], where: str = "parameters registry") -> GateSettings:
    """Validate the ``registry`` parameters; a wrong key or value raises naming it.

    Raises:
        ValueError: an unknown key, an invalid model name, mode, margin or pipeline list.
    """
    fields = set(GateSettings.__dataclass_fields__)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(fields)}")
    values = {**asdict(GateSettings()), **dict(params)}
    if not isinstance(values["model_name"], str) or not _NAME.match(values["model_name"]):
        raise ValueError(f"{where}.model_name: got {values['model_name']!r}, expected letters, digits, _ . -")
    if not isinstance(values["metric"], str) or not values["metric"]:
        raise ValueError(f"{where}.metric: expected a metric name such as test.classification.macro_ap")
    if values["mode"] not in ("max", "min"):
        raise ValueError(f"{where}.mode: got {values['mode']!r}, expected 'max' or 'min'")
    margin = values["min_margin"]
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin >= 0:
        raise ValueError(f"{where}.min_margin: got {margin!r}, expected a number >= 0")
    pipelines = values["from_pipelines"]
    if isinstance(pipelines, str) or not all(isinstance(p, str) for p in pipelines) or not pipelines:
        raise ValueError(f"{where}.from_pipelines: expected a non-empty list of pipeline names")
    if values["parent_run_id"] is not None and not isinstance(values["parent_run_id"], str):
        raise ValueError(f"{where}.parent_run_id: expected a run id string or null")
    fallbacks = values["fallback_metrics"]
    if isinstance(fallbacks, str) or not all(isinstance(m, str) and m for m in fallbacks):
        raise ValueError(f"{where}.fallback_metrics: expected a list of metric names, got {fallbacks!r}")
    values["min_margin"] = float(margin)
    values["from_pipelines"] = tuple(pipelines)
    values["fallback_metrics"] = tuple(fallbacks)
    return GateSettings(**values)


# ---- choosing the candidate -------------------------------------------------------------------------------
def find_parent_run(
    client: MlflowClient, experiment_ids: list[str], settings: GateSettings, current_parent: str | None
) -> Run:
    """The training run whose models compete: ``parent_run_id`` if set, else the current ``kedro run``'s
    parent when it logged models, else the latest FINISHED parent run of one of ``from_pipelines``.

    Raises:
        PromotionError: no such run.
    """
    if settings.parent_run_id:
        return client.get_run(settings.parent_run_id)
    if current_parent is not None and model_runs(client, experiment_ids, current_parent):
        return client.get_run(current_parent)
    runs = [
        run
        for pipeline in settings.from_pipelines
        for run in client.search_runs(
            experiment_ids,
            filter_string=f"tags.`{PIPELINE_TAG}` = '{pipeline}' AND attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
    ]
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        if MLFLOW_PARENT_RUN_ID not in run.data.tags and model_runs(client, experiment_ids, run.info.run_id):
            return run
    raise PromotionError(
        f"no finished parent run of pipeline(s) {list(settings.from_pipelines)} with logged models in "
        f"experiment(s) {experiment_ids}; run `kedro run --pipeline train_all` first"
    )


def model_runs(client: MlflowClient, experiment_ids: list[str], parent_run_id: str) -> list[Run]:
    """Nested runs of ``parent_run_id`` that logged a servable model."""
    return [
        run
        for run in client.search_runs(
            experiment_ids,
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            max_results=1000,
        )
        if MODEL_URI_TAG in run.data.tags
    ]


def gate_metric(runs: list[Run], settings: GateSettings) -> str:
    """The first of ``metric`` and ``fallback_metrics`` that some candidate run has as a finite value (the
    robustness suite's summary is missing where the suite did not run, e.g. on a lab's own data); ``metric``
    when none has any. Champion and challenger are then compared on that one metric."""
    for metric in (settings.metric, *settings.fallback_metrics):
        if any(math.isfinite(r.data.metrics.get(metric, math.nan)) for r in runs):
            if metric != settings.metric:
                logger.warning("gate: no model run has %s; deciding on %s", settings.metric, metric)
            return metric
    return settings.metric


def best_run(runs: list[Run], settings: GateSettings) -> Run:
    """The run with the best finite ``settings.metric`` (ties: the first by run name).

    Raises:
        PromotionError: no run has the metric.
    """
    scored = [(r.data.metrics.get(settings.metric), r) for r in runs]
    finite = [(s, r) for s, r in scored if s is not None and math.isfinite(s)]
    if not finite:
        names = sorted(r.info.run_name for r in runs)
        raise PromotionError(f"none of the model runs {names} has a finite metric '{settings.metric}'")
    sign = 1.0 if settings.mode == "max" else -1.0
    finite.sort(key=lambda sr: (-sign * sr[0], sr[1].info.run_name))
    return finite[0][1]


# ---- registering and the gate ---------------------------------------------------------------------------
def register_challenger(client: MlflowClient, settings: GateSettings, run: Run) -> ModelVersion:
    """The registered version of ``run``'s model (created once), carrying alias ``challenger``."""
    name = settings.model_name
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not _absent(error):
            raise _unreadable(f"registered model {name!r}", error) from error
        client.create_registered_model(
            name, description="alloy-mtl multi-task models (alloy, thickness, absorption)"
        )
    existing = client.search_model_versions(f"name = '{name}' AND run_id = '{run.info.run_id}'")
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        logger.info("model %s version %s already holds run %s", name, version.version, run.info.run_id)
        if f"{GATE_PREFIX}decision" not in version.tags:  # registered, but the gate never finished on it
            client.set_registered_model_alias(name, CHALLENGER, version.version)
    else:
        model_uri = run.data.tags[MODEL_URI_TAG]
        version = client.create_model_version(
            name,
            source=model_uri,
            run_id=run.info.run_id,
            tags={SOURCE_RUN_TAG: run.info.run_id, "arch": run.info.run_name},
            model_id=model_uri.removeprefix("models:/"),
        )
        logger.info(
            "registered %s version %s from run %s (%s)", name, version.version, run.info.run_id, model_uri
        )
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def current_champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding alias ``champion``; None only when the registry says the alias (or the model) does
    not exist.

    Raises:
        PromotionError: any other registry error (fail closed: a champion that could not be read is not
            "no champion").
    """
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if _absent(error):
            return None
        raise _unreadable(f"the {CHAMPION} alias of {name!r}", error) from error


def run_score(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    """``metric`` of a run (None when absent)."""
    if not run_id:
        return None
    return client.get_run(run_id).data.metrics.get(metric)


def run_tag(client: MlflowClient, run_id: str | None, tag: str) -> str:
    """A tag of a run, ``none`` when the run or tag is absent."""
    if not run_id:
        return "none"
    return str(client.get_run(run_id).data.tags.get(tag, "none"))


def decide(challenger: float | None, champion: float | None, settings: GateSettings) -> tuple[bool, str]:
    """Whether the challenger wins, and why (no model registry access: the rule alone)."""
    metric, margin = settings.metric, settings.min_margin
    if challenger is None or not math.isfinite(challenger):
        return False, f"challenger has no finite {metric}"
    if champion is None or not math.isfinite(champion):
        return True, f"champion has no finite {metric}"
    gain = challenger - champion if settings.mode == "max" else champion - challenger
    if gain > 0 and gain >= margin:
        return (
            True,
            f"{metric} {challenger:.4f} beats champion {champion:.4f} by {gain:.4f} >= margin {margin}",
        )
    return False, f"{metric} {challenger:.4f} does not beat champion {champion:.4f} by margin {margin}"


def promote(client: MlflowClient, settings: GateSettings, challenger: ModelVersion) -> dict[str, Any]:
    """Run the gate for ``challenger``; returns the decision (also written as the version's ``gate.*`` tags).

    A version that already carries a decision is not decided again (idempotent), unless it holds the
    champion alias without its tags (a gate that failed after moving the alias): then the tags are written.
    """
    name, version = settings.model_name, str(challenger.version)
    tags = client.get_model_version(name, version).tags
    champion = current_champion(client, name)
    if f"{GATE_PREFIX}decision" in tags:
        decision = {k.removeprefix(GATE_PREFIX): v for k, v in tags.items() if k.startswith(GATE_PREFIX)}
        logger.info(
            "gate: %s version %s already decided (%s); nothing changed", name, version, decision["decision"]
        )
        return {**decision, "model_name": name, "version": version, "changed": False}
    challenger_score = run_score(client, challenger.run_id, settings.metric)
    if champion is not None and str(champion.version) == version:
        promoted, reason = (
            True,
            "challenger already holds the champion alias (completing an interrupted gate)",
        )
        champion_version, champion_score = version, challenger_score
    elif champion is None:
        promoted, reason = True, "first model: no champion yet"
        champion_version, champion_score = None, None
    else:
        champion_version = str(champion.version)
        champion_score = run_score(client, champion.run_id, settings.metric)
        promoted, reason = decide(challenger_score, champion_score, settings)
    if promoted and (champion is None or str(champion.version) != version):
        # compare, then swap: a gate that ran meanwhile and moved the alias was decided against another
        # champion; this decision no longer holds (the registry offers no atomic compare-and-swap, so this
        # narrows the race to the two calls below)
        now = current_champion(client, name)
        if (None if now is None else str(now.version)) != champion_version:
            raise PromotionError(
                f"gate: the {CHAMPION} alias of {name!r} moved from version {champion_version or 'none'} to "
                f"{'none' if now is None else now.version} while version {version} was being decided; nothing "
                "was changed; rerun the gate to decide against the new champion"
            )
        client.set_registered_model_alias(name, CHAMPION, version)  # one atomic move: never champion-less
    data = {
        "challenger_dataset": run_tag(client, challenger.run_id, FINGERPRINT_TAG),
        "champion_dataset": run_tag(client, None if champion is None else champion.run_id, FINGERPRINT_TAG),
    }
    if champion is not None and str(champion.version) != version and len(set(data.values())) > 1:
        reason += "; note: the scores come from different test data (dataset fingerprints differ)"
    decision = {
        "decision": "promoted" if promoted else "kept_champion",
        "metric": settings.metric,
        "mode": settings.mode,
        "min_margin": str(settings.min_margin),
        "challenger_score": _text(challenger_score),
        "champion_score": _text(champion_score),
        "champion_version_before": champion_version or "none",
        "reason": reason,
        **data,
    }
    for key, value in decision.items():
        client.set_model_version_tag(name, version, f"{GATE_PREFIX}{key}", value)
    logger.info("gate: %s version %s %s: %s", name, version, decision["decision"], reason)
    return {**decision, "model_name": name, "version": version, "changed": True}


def _text(value: float | None) -> str:
    return "none" if value is None else repr(float(value))


def run_gate(
    client: MlflowClient, settings: GateSettings, experiment_ids: list[str], current_parent: str | None = None
) -> dict[str, Any]:
    """Pick the best model of the chosen training run, register it as challenger and run the gate.

    Returns:
        The decision (``decision``, scores, ``reason``, ``version``, ``source_run_id``, ``changed``) and the
        ``candidates`` it chose from (the nested runs with a model).
    """
    parent = find_parent_run(client, experiment_ids, settings, current_parent)
    runs = model_runs(client, experiment_ids, parent.info.run_id)
    if not runs:
        raise PromotionError(f"parent run {parent.info.run_id} has no nested run with a logged model")
    settings = replace(settings, metric=gate_metric(runs, settings))
    chosen = best_run(runs, settings)
    version = register_challenger(client, settings, chosen)
    decision = promote(client, settings, version)
    if current_champion(client, settings.model_name) is None:  # defensive: the invariant of this module
        raise PromotionError(f"registered model {settings.model_name} has no champion after the gate")
    return {
        **decision,
        "source_run_id": chosen.info.run_id,
        "arch": chosen.info.run_name,
        "parent_run_id": parent.info.run_id,
        "candidates": sorted(str(r.info.run_name) for r in runs),
    }
