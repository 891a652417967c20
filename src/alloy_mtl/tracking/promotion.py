"""Promotion gate: register the best model of a training run as the ``challenger`` and promote it to
``champion`` only when it beats the current champion on the same images.

The candidates of one training run were scored on the same images (the run's robustness suite, else its test
split), so the best of them by ``metric`` is the challenger. The champion, trained earlier, was scored on other
data: both registered versions are loaded and predict the current run's images
(:mod:`alloy_mtl.tracking.paired_gate`), and a paired specimen bootstrap gives the difference's interval
(:mod:`alloy_mtl.evaluation.paired_comparison`).

Guarantees:

* the first model ever registered becomes champion;
* a challenger moves ``champion`` only when the lower end of the difference's interval is above ``min_margin``
  and no alloy's AP falls by more than ``alloy_tolerance``;
* the decision, both scores, the interval, the per-alloy changes and the reason are written as tags of the
  challenger version and logged;
* idempotent: a second run over the same training run registers nothing new and changes no alias or tag;
* never without a champion: the champion alias is only ever *moved* (one atomic alias update), never
  deleted, and it is moved before the decision tags are written, so a gate failing half-way leaves the
  old or the new champion in place and a rerun completes the tags.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.evaluation.paired_comparison import PairedComparison, paired_decision

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


Comparer = Callable[[ModelVersion, ModelVersion], PairedComparison]
"""(challenger, champion) -> their comparison on the same images (:func:`alloy_mtl.tracking.paired_gate.comparer`)."""


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
    :func:`parse_gate_settings`, before the first node of a run).

    Attributes:
        model_name: The registered model (letters, digits, ``_ . -``); the inference pipeline serves its champion.
        metric: The MLflow metric the candidates of one training run are ranked by (they were scored on the same
            images); the best becomes the challenger.
        mode: ``max`` (higher is better) or ``min``, for ``metric``.
        min_margin: Against a champion, the lower end of the paired bootstrap interval of (challenger -
            champion) worst macro AP on the same images must be above this.
        alloy_tolerance: Against a champion, no alloy's AP (mean over the compared conditions) may fall by more
            than this.
        n_resamples: Paired specimen-bootstrap resamples of the difference (at least 100).
        level: The interval's level, in [0.5, 1).
        seed: The resamples' seed.
        parent_run_id: The training run whose models compete; null: this kedro run's, else the latest finished
            run of ``from_pipelines``.
        from_pipelines: The pipelines whose runs the gate alone (``kedro run --pipeline promotion``) picks from.
        fallback_metrics: Metrics the ranking falls back to, in order, where no candidate has ``metric`` (a lab's
            own data, where no robustness suite runs).
    """

    model_name: str = "alloy_mtl"
    metric: str = "test.classification.macro_ap"
    mode: str = "max"
    min_margin: float = 0.005
    alloy_tolerance: float = 0.02
    n_resamples: int = 1000
    level: float = 0.95
    seed: int = 0
    parent_run_id: str | None = None
    from_pipelines: tuple[str, ...] = ("train_all", "__default__")
    fallback_metrics: tuple[str, ...] = ()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any, allow_empty: bool) -> bool:
    return (
        not isinstance(value, str)
        and isinstance(value, list | tuple)
        and (allow_empty or bool(value))
        and all(isinstance(v, str) and v for v in value)
    )


def _setting_problems(values: Mapping[str, Any]) -> list[str]:
    """``key: problem`` for every invalid value of a complete ``registry`` mapping."""
    checks = {
        "model_name": (
            isinstance(values["model_name"], str) and bool(_NAME.match(values["model_name"])),
            "expected letters, digits, _ . -",
        ),
        "metric": (
            isinstance(values["metric"], str) and bool(values["metric"]),
            "expected a metric name such as test.classification.macro_ap",
        ),
        "mode": (values["mode"] in ("max", "min"), "expected 'max' or 'min'"),
        "min_margin": (_number(values["min_margin"]) and values["min_margin"] >= 0, "expected a number >= 0"),
        "alloy_tolerance": (
            _number(values["alloy_tolerance"]) and values["alloy_tolerance"] >= 0,
            "expected a number >= 0",
        ),
        "n_resamples": (
            isinstance(values["n_resamples"], int)
            and _number(values["n_resamples"])
            and values["n_resamples"] >= 100,
            "expected an integer >= 100",
        ),
        "level": (_number(values["level"]) and 0.5 <= values["level"] < 1, "expected a number in [0.5, 1)"),
        "seed": (
            isinstance(values["seed"], int) and _number(values["seed"]) and values["seed"] >= 0,
            "expected an integer >= 0",
        ),
        "from_pipelines": (
            _names(values["from_pipelines"], allow_empty=False),
            "expected a non-empty list of pipeline names",
        ),
        "parent_run_id": (
            values["parent_run_id"] is None or isinstance(values["parent_run_id"], str),
            "expected a run id string or null",
        ),
        "fallback_metrics": (
            _names(values["fallback_metrics"], allow_empty=True),
            "expected a list of metric names",
        ),
    }
    return [
        f"{key}: got {values[key]!r}, {expected}" for key, (valid, expected) in checks.items() if not valid
    ]


def gate_setting_problems(params: Mapping[str, Any], where: str = "registry") -> list[str]:
    """Every unknown key and invalid value of the ``registry`` parameters, each named by its YAML path."""
    fields = set(GateSettings.__dataclass_fields__)
    unknown = sorted(set(params) - fields)
    if unknown:
        return [f"{where}: unknown key(s) {unknown}; expected {sorted(fields)}"]
    return [f"{where}.{problem}" for problem in _setting_problems({**asdict(GateSettings()), **dict(params)})]


def parse_gate_settings(params: Mapping[str, Any], where: str = "parameters registry") -> GateSettings:
    """Validate the ``registry`` parameters; every wrong key or value is named in one error.

    Raises:
        ValueError: unknown keys and invalid values (model name, metric, mode, margin, tolerance, bootstrap
            settings, pipeline list, parent run, fallback metrics).
    """
    problems = gate_setting_problems(params, where)
    if problems:
        raise ValueError("; ".join(problems))
    values = {**asdict(GateSettings()), **dict(params)}
    for key in ("min_margin", "alloy_tolerance", "level"):
        values[key] = float(values[key])
    values["from_pipelines"] = tuple(values["from_pipelines"])
    values["fallback_metrics"] = tuple(values["fallback_metrics"])
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


def _comparison_tags(comparison: PairedComparison) -> dict[str, str]:
    """The paired comparison as ``gate.*`` tag values (without the prefix)."""
    tags = {
        "statistic": comparison.statistic,
        "difference": _text(comparison.difference),
        "difference_ci_low": _text(comparison.ci_low),
        "difference_ci_high": _text(comparison.ci_high),
        "level": str(comparison.level),
        "n_resamples": str(comparison.n_resamples),
        "n_images": str(comparison.n_images),
        "n_specimens": str(comparison.n_specimens),
        "conditions": ",".join(comparison.conditions),
    }
    return tags | {f"alloy_ap_drop.{alloy}": _text(drop) for alloy, drop in comparison.alloy_ap_drop.items()}


def promote(
    client: MlflowClient,
    settings: GateSettings,
    challenger: ModelVersion,
    compare: Comparer | None = None,
) -> dict[str, Any]:
    """Run the gate for ``challenger``; returns the decision (also written as the version's ``gate.*`` tags).

    ``compare`` scores the challenger and the champion on the same images; it is called only when a champion
    other than the challenger exists. A version that already carries a decision is not decided again
    (idempotent), unless it holds the champion alias without its tags (a gate that failed after moving the
    alias): then the tags are written.

    Raises:
        PromotionError: a champion exists and there is no ``compare``, or the comparison failed (the champion
            stays as it was).
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
    compared: dict[str, str] = {}
    if champion is not None and str(champion.version) == version:
        promoted, reason = (
            True,
            "challenger already holds the champion alias (completing an interrupted gate)",
        )
        champion_version = version
        challenger_score = champion_score = run_score(client, challenger.run_id, settings.metric)
    elif champion is None:
        promoted, reason = True, "first model: no champion yet"
        champion_version, champion_score = None, None
        challenger_score = run_score(client, challenger.run_id, settings.metric)
    else:
        champion_version = str(champion.version)
        if compare is None:
            raise PromotionError(
                f"gate: {name} version {version} cannot be compared with champion version {champion_version}: "
                "no images to score both on; nothing was changed"
            )
        try:
            comparison = compare(challenger, champion)
        except (MlflowException, OSError, ValueError) as error:
            raise PromotionError(
                f"gate: comparing {name} version {version} with champion version {champion_version} failed "
                f"({type(error).__name__}: {error}); nothing was changed (the champion stays as it was)"
            ) from error
        promoted, reason = paired_decision(comparison, settings.min_margin, settings.alloy_tolerance)
        challenger_score, champion_score = comparison.challenger, comparison.champion
        compared = _comparison_tags(comparison)
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
    decision = {
        "decision": "promoted" if promoted else "kept_champion",
        "metric": settings.metric,
        "mode": settings.mode,
        "min_margin": str(settings.min_margin),
        "alloy_tolerance": str(settings.alloy_tolerance),
        "challenger_score": _text(challenger_score),
        "champion_score": _text(champion_score),
        "champion_version_before": champion_version or "none",
        "reason": reason,
        "challenger_dataset": run_tag(client, challenger.run_id, FINGERPRINT_TAG),
        "champion_dataset": run_tag(client, None if champion is None else champion.run_id, FINGERPRINT_TAG),
        **compared,
    }
    for key, value in decision.items():
        client.set_model_version_tag(name, version, f"{GATE_PREFIX}{key}", value)
    logger.info("gate: %s version %s %s: %s", name, version, decision["decision"], reason)
    return {**decision, "model_name": name, "version": version, "changed": True}


def _text(value: float | None) -> str:
    return "none" if value is None else repr(float(value))


def run_gate(
    client: MlflowClient,
    settings: GateSettings,
    experiment_ids: list[str],
    current_parent: str | None = None,
    compare: Comparer | None = None,
) -> dict[str, Any]:
    """Pick the best model of the chosen training run, register it as challenger and run the gate
    (``compare``: see :func:`promote`).

    Returns:
        The decision (``decision``, scores, ``reason``, ``version``, ``source_run_id``, ``changed``), the
        ``candidates`` it chose from (the nested runs with a model) and ``candidate_scores`` (each one's
        ``metric``, None where it has none).
    """
    parent = find_parent_run(client, experiment_ids, settings, current_parent)
    runs = model_runs(client, experiment_ids, parent.info.run_id)
    if not runs:
        raise PromotionError(f"parent run {parent.info.run_id} has no nested run with a logged model")
    settings = replace(settings, metric=gate_metric(runs, settings))
    chosen = best_run(runs, settings)
    version = register_challenger(client, settings, chosen)
    decision = promote(client, settings, version, compare)
    if current_champion(client, settings.model_name) is None:  # defensive: the invariant of this module
        raise PromotionError(f"registered model {settings.model_name} has no champion after the gate")
    return {
        **decision,
        "source_run_id": chosen.info.run_id,
        "arch": chosen.info.run_name,
        "parent_run_id": parent.info.run_id,
        "candidates": sorted(str(r.info.run_name) for r in runs),
        "candidate_scores": {
            str(r.info.run_name): r.data.metrics.get(settings.metric)
            for r in sorted(runs, key=lambda r: str(r.info.run_name))
        },
    }


def gate_markdown(decision: Mapping[str, Any]) -> str:
    """The gate's decision as a short markdown report: the verdict and reason, every candidate's score, and
    (when a champion was compared) the paired difference, its interval and each alloy's AP change."""
    lines = [
        "# Promotion gate",
        "",
        f"**{decision.get('decision', 'none')}**"
        + (f": {decision['model_name']} version {decision['version']}" if "version" in decision else ""),
        "",
        str(decision.get("reason", "")),
        "",
    ]
    scores = decision.get("candidate_scores") or {}
    if scores:
        lines += [
            f"## Candidates (`{decision.get('metric', '')}`, recorded by the training run)",
            "",
            "| model | score |",
            "|---|---|",
        ]
        lines += [
            f"| {name}{' (challenger)' if name == decision.get('arch') else ''} | "
            f"{'n/a' if score is None else f'{score:.4f}'} |"
            for name, score in scores.items()
        ]
        lines.append("")
    if "difference" in decision:
        lines += [
            f"## Challenger against champion version {decision['champion_version_before']}, on the same images",
            "",
            f"{decision['statistic']} ({decision['n_images']} images, {decision['n_specimens']} specimens, "
            f"conditions: {decision['conditions'].replace(',', ', ')})",
            "",
            "| | value |",
            "|---|---|",
            f"| challenger | {float(decision['challenger_score']):.4f} |",
            f"| champion | {float(decision['champion_score']):.4f} |",
            f"| difference | {float(decision['difference']):+.4f} [{float(decision['difference_ci_low']):+.4f}, "
            f"{float(decision['difference_ci_high']):+.4f}] ({float(decision['level']):.0%}, "
            f"{decision['n_resamples']} paired specimen resamples) |",
            "",
            f"Per-alloy AP change, challenger minus champion, mean over the conditions (tolerance: a fall of "
            f"{decision['alloy_tolerance']}):",
            "",
            "| alloy | AP change |",
            "|---|---|",
        ]
        drops = {
            k.removeprefix("alloy_ap_drop."): v for k, v in decision.items() if k.startswith("alloy_ap_drop.")
        }
        lines += [f"| {alloy} | {-float(drop):+.4f} |" for alloy, drop in drops.items()]
        lines.append("")
    return "\n".join(lines)
