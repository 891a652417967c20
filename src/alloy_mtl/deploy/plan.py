"""Check a Kedro pipeline against kubeflow.yml and resolve the steps both compilers build.

The plan is the one place that decides the groups, their order and dependencies, what each step runs,
its resources and caching, and the typed pipeline parameters. :mod:`~alloy_mtl.deploy.compiler` turns it
into container components, :mod:`~alloy_mtl.deploy.local` into lightweight ones for ``kfp.local``.
Every problem found is collected and raised together.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kedro.pipeline import Pipeline

from alloy_mtl.deploy.config import GroupingConfig, GroupResources, KubeflowConfig, parse_kubeflow_config
from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.grouping import Grouping, group_pipeline, is_parameter
from alloy_mtl.deploy.project import ProjectView

logger = logging.getLogger(__name__)

MLFLOW_TASK = "mlflow-start-run"
MLFLOW_END_TASK = "mlflow-end-run"
FINGERPRINT_TASK = "data-fingerprint"
EXIT_HANDLER = "exit-handler-1"
CREATE_PVC_TASK = "createpvc"
DELETE_PVC_TASK = "deletepvc"
RESERVED_TASKS = frozenset(
    {MLFLOW_TASK, MLFLOW_END_TASK, FINGERPRINT_TASK, EXIT_HANDLER, CREATE_PVC_TASK, DELETE_PVC_TASK}
)
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
}


@dataclass(frozen=True)
class PipelineParameter:
    """A KFP pipeline parameter and the Kedro parameter it overrides."""

    name: str
    kedro: str
    type: str
    default: int | float | str | bool
    description: str | None = None

    @property
    def python_type(self) -> type:
        """The annotation KFP reads to type the parameter."""
        return {"int": int, "float": float, "str": str, "bool": bool}[self.type]


REPORT_DATASETS = ("comparison_markdown", "robustness_markdown", "registry_report")
"""Markdown reports a step shows in the Kubeflow UI (the first its nodes write)."""
METRICS_SUFFIX = ".metrics"
"""A model's metrics JSON (``<model>.metrics``): shown as Metrics and ClassificationMetrics."""
SUITE_SUFFIX = ".robustness"
"""A model's robustness-suite scores (``<model>.robustness``): its summary shown as Metrics."""


@dataclass(frozen=True)
class StepReports:
    """Files a step's nodes write that it shows in the Kubeflow UI (paths as the catalog has them)."""

    metrics: str | None = None
    """The metrics JSON of the one model the step evaluates (None: none, or several)."""
    markdown: str | None = None
    """A markdown report."""
    suite: tuple[tuple[str, str], ...] = ()
    """``(model, robustness JSON)`` of every model whose suite scores the step writes."""

    def arguments(self) -> list[str]:
        """The step entry point's arguments naming them."""
        return [
            *(["--report-metrics", self.metrics] if self.metrics else []),
            *(["--report-markdown", self.markdown] if self.markdown else []),
            *[argument for model, path in self.suite for argument in ("--report-suite", model, path)],
        ]


@dataclass(frozen=True)
class Step:
    """One KFP task that runs ``kedro run --pipeline <pipeline> [--nodes <nodes>]``."""

    group: str
    task_name: str
    pipeline: str
    nodes: tuple[str, ...] | None
    parents: tuple[str, ...]
    parameters: tuple[str, ...]
    resources: GroupResources
    caching: bool
    final: bool = False
    reports: StepReports = StepReports()
    fingerprinted: bool = False
    """A cached step that reads ``params:data_source``: the data's content fingerprint is one of its inputs."""


@dataclass(frozen=True)
class DeploymentPlan:
    """Everything needed to build the KFP pipeline of one Kedro pipeline."""

    pipeline: str
    kfp_name: str
    env: str
    config: KubeflowConfig
    steps: tuple[Step, ...]
    parameters: tuple[PipelineParameter, ...]
    data_source: Mapping[str, Any] = field(default_factory=dict)
    """The configured ``data_source`` (what a pipeline parameter left empty keeps)."""

    def data_source_parameters(self) -> dict[str, str]:
        """``kind`` / ``path`` -> the pipeline parameter that overrides ``data_source.<key>``, where one does."""
        return {
            key: parameter.name
            for key in ("kind", "path")
            for parameter in self.parameters
            if parameter.kedro == f"data_source.{key}"
        }

    def data_source_arguments(self, values: Mapping[str, Any]) -> list[str]:
        """Arguments of ``python -m alloy_mtl.deploy.fingerprint``: the data source's kind and path, each the
        pipeline parameter that overrides it (``values``) where there is one, and the configured value."""
        arguments = []
        overridden = self.data_source_parameters()
        for key in ("kind", "path"):
            configured = self.data_source.get(key)
            value = values[overridden[key]] if key in overridden else configured
            arguments += [f"--{key}", f"{value if value is not None else ''}"]
            arguments += [f"--configured-{key}", f"{configured if configured is not None else ''}"]
        return arguments

    def step(self, group: str) -> Step:
        """The step of group ``group``."""
        return next(step for step in self.steps if step.group == group)

    def step_arguments(self, step: Step, values: Mapping[str, Any], mlflow_run_id: Any) -> list[str]:
        """Arguments of ``python -m alloy_mtl.deploy.step`` for ``step``.

        ``values`` maps each pipeline parameter to what stands for it (a KFP placeholder or channel,
        formatted into the string), ``mlflow_run_id`` likewise.
        """
        by_name = {parameter.name: parameter for parameter in self.parameters}
        arguments = ["--env", self.env, "--pipeline", step.pipeline]
        if step.nodes is not None:
            arguments += ["--nodes", ",".join(step.nodes)]
        for name in step.parameters:
            parameter = by_name[name]
            arguments += ["--param", f"{parameter.kedro}:{parameter.type}={values[name]}"]
        arguments += ["--mlflow-run-id", f"{mlflow_run_id}", *step.reports.arguments()]
        if step.resources.gpu > 1:  # one DDP process per GPU (torchrun -m alloy_mtl.train)
            arguments += ["--nproc-per-node", str(step.resources.gpu)]
        return arguments


def task_name(group: str) -> str:
    """A KFP-safe task name: lower case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")


def build_plan(project: ProjectView, pipeline_name: str) -> DeploymentPlan:
    """Check ``pipeline_name`` of ``project`` and resolve its steps.

    Raises:
        DeployError: unknown pipeline; otherwise every problem found at once: kubeflow.yml errors, groups
            without resources, memory datasets crossing a step boundary, unknown or mistyped parameters,
            clashing task names, a cyclic grouping.
    """
    if pipeline_name not in project.pipelines:
        known = ", ".join(name for name in project.pipelines if name != "__default__")
        raise DeployError([f"unknown pipeline '{pipeline_name}'; registered pipelines: {known}"])
    config = parse_kubeflow_config(project.kubeflow)
    pipeline = project.pipelines[pipeline_name]
    problems: list[str] = []

    final_name, final_pipeline, grouping_config = _final_step(project, pipeline_name, pipeline, config)
    grouping = group_pipeline(pipeline, grouping_config, project.pipelines)
    separate_final = final_pipeline is not None and final_name not in grouping.names
    groups = grouping.names + ([final_name] if separate_final else [])

    try:
        resources = config.resources_for(groups)
    except DeployError as error:
        problems.extend(error.problems)
        resources = {}
    problems.extend(_memory_crossings(grouping, project))
    if separate_final:
        problems.extend(_final_inputs(final_name, final_pipeline, pipeline, project))
    parameters, parameter_problems = _parameters(config, project)
    problems.extend(parameter_problems)
    problems.extend(_task_name_clashes(groups))
    if problems:
        raise DeployError(problems)

    steps = [
        _step(
            name=group.name,
            pipeline=pipeline_name,
            nodes=group.nodes,
            parents=group.parents,
            node_inputs=group.inputs,
            internal_outputs=_outputs(pipeline, group.nodes),
            resources=resources[group.name],
            parameters=parameters,
            config=config,
            final=group.name == final_name,
            filepath=project.dataset_filepath,
        )
        for group in grouping.groups
    ]
    if separate_final:
        steps.append(
            _step(
                name=final_name,
                pipeline=final_name,
                nodes=None,
                parents=tuple(grouping.leaves()),
                node_inputs=frozenset().union(*(node.inputs for node in final_pipeline.nodes)),
                internal_outputs=final_pipeline.all_outputs(),
                resources=resources[final_name],
                parameters=parameters,
                config=config,
                final=True,
                filepath=project.dataset_filepath,
            )
        )
    return DeploymentPlan(
        pipeline=pipeline_name,
        kfp_name=task_name(f"{config.pipeline_prefix}-{pipeline_name}"),
        env=project.env,
        config=config,
        steps=tuple(steps),
        parameters=tuple(parameters),
        data_source=dict(project.parameters.get("data_source") or {}),
    )


def _final_step(
    project: ProjectView, pipeline_name: str, pipeline: Pipeline, config: KubeflowConfig
) -> tuple[str | None, Pipeline | None, GroupingConfig]:
    """Where the final (promotion gate) step comes from, and the grouping that keeps its nodes together."""
    final = config.final_step.pipeline
    if final is None or final == pipeline_name:
        return None, None, config.grouping
    if final not in project.pipelines:
        logger.info(
            "Final step skipped: Kedro pipeline '%s' (final_step.pipeline in kubeflow.yml) is not registered",
            final,
        )
        return None, None, config.grouping
    final_pipeline = project.pipelines[final]
    final_nodes = {node.name for node in final_pipeline.nodes}
    compiled_nodes = {node.name for node in pipeline.nodes}
    if final_nodes <= compiled_nodes:
        # the gate is part of the compiled pipeline: its nodes form one group, placed by the graph
        nodes = {name: final for name in final_nodes} | dict(config.grouping.nodes)
        return final, final_pipeline, config.grouping.model_copy(update={"nodes": nodes})
    if final_nodes & compiled_nodes:
        shared = ", ".join(sorted(final_nodes & compiled_nodes))
        raise DeployError(
            [
                f"final step pipeline '{final}' shares only some nodes with '{pipeline_name}' ({shared}): "
                "it must be wholly inside it or wholly outside it"
            ]
        )
    return final, final_pipeline, config.grouping


def _memory_crossings(grouping: Grouping, project: ProjectView) -> list[str]:
    problems = []
    for crossing in grouping.crossings:
        kind = project.dataset_type(crossing.dataset)
        if _is_memory(kind):
            problems.append(
                f"dataset '{crossing.dataset}' is a memory dataset ({kind or 'not in the catalog'}) but "
                f"crosses from step '{crossing.producer}' to {', '.join(crossing.consumers)}: declare it in "
                "the catalog with a file type, or put its producer and consumers in one group"
            )
    return problems


def _final_inputs(
    final: str, final_pipeline: Pipeline, pipeline: Pipeline, project: ProjectView
) -> list[str]:
    produced = pipeline.all_outputs()
    problems = []
    for dataset in sorted(final_pipeline.inputs()):
        if is_parameter(dataset) or dataset not in produced:
            continue
        kind = project.dataset_type(dataset)
        if _is_memory(kind):
            problems.append(
                f"dataset '{dataset}' is a memory dataset ({kind or 'not in the catalog'}) but the final step "
                f"'{final}' reads it: declare it in the catalog with a file type"
            )
    return problems


def _is_memory(kind: str | None) -> bool:
    return kind is None or kind.rsplit(".", 1)[-1].endswith("MemoryDataset")


def _parameters(config: KubeflowConfig, project: ProjectView) -> tuple[list[PipelineParameter], list[str]]:
    parameters, problems = [], []
    for name, spec in config.parameters.items():
        default = spec.default
        if default is None:
            found, default = _lookup(project.parameters, spec.kedro)
            if not found:
                problems.append(
                    f"pipeline parameter '{name}' overrides Kedro parameter '{spec.kedro}', which the "
                    f"parameters of env '{project.env}' do not define"
                )
                continue
        if default is None and spec.type == "str":
            default = ""  # the step then keeps the configured value
        wanted = _PYTHON_TYPES[spec.type]
        if (
            default is None
            or not isinstance(default, wanted)
            or (spec.type != "bool" and isinstance(default, bool))
        ):
            problems.append(
                f"pipeline parameter '{name}' is declared {spec.type} but its default "
                f"({spec.kedro} = {default!r}) is not"
            )
            continue
        if spec.type == "float":
            default = float(default)
        parameters.append(PipelineParameter(name, spec.kedro, spec.type, default, spec.description))
    return parameters, problems


def _lookup(parameters: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    value: Any = parameters
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _relevant(kedro_key: str, inputs: frozenset[str]) -> bool:
    """Does a node reading ``inputs`` see the Kedro parameter ``kedro_key``?"""
    for dataset in inputs:
        if dataset == "parameters":
            return True
        if dataset.startswith("params:"):
            read = dataset.removeprefix("params:")
            if kedro_key == read or kedro_key.startswith(f"{read}.") or read.startswith(f"{kedro_key}."):
                return True
    return False


def _outputs(pipeline: Pipeline, nodes: Sequence[str]) -> set[str]:
    return set().union(*(node.outputs for node in pipeline.nodes if node.name in set(nodes)))


def _step(
    *,
    name: str,
    pipeline: str,
    nodes: tuple[str, ...] | None,
    parents: tuple[str, ...],
    node_inputs: frozenset[str],
    internal_outputs: set[str],
    resources: GroupResources,
    parameters: Sequence[PipelineParameter],
    config: KubeflowConfig,
    final: bool,
    filepath: Callable[[str], str | None],
) -> Step:
    reads_storage = any(not is_parameter(d) and d not in internal_outputs for d in node_inputs)
    caching = resources.caching and not reads_storage and not config.storage.run_scoped
    if resources.caching and not caching:
        reason = "reads the shared volume" if reads_storage else "writes to a volume made for each run"
        logger.debug("Caching off for step '%s': it %s", name, reason)
    return Step(
        group=name,
        task_name=task_name(name),
        pipeline=pipeline,
        nodes=nodes,
        parents=parents,
        parameters=tuple(p.name for p in parameters if _relevant(p.kedro, node_inputs)),
        resources=resources,
        caching=caching,
        final=final,
        reports=_reports(internal_outputs, filepath),
        fingerprinted=caching and _relevant("data_source", node_inputs),
    )


def _reports(outputs: set[str], filepath: Callable[[str], str | None]) -> StepReports:
    metrics = sorted(path for name in outputs if name.endswith(METRICS_SUFFIX) and (path := filepath(name)))
    markdown = next((path for name in REPORT_DATASETS if name in outputs and (path := filepath(name))), None)
    suite = tuple(
        (name.removesuffix(SUITE_SUFFIX), path)
        for name in sorted(outputs)
        if name.endswith(SUITE_SUFFIX) and (path := filepath(name))
    )
    return StepReports(metrics=metrics[0] if len(metrics) == 1 else None, markdown=markdown, suite=suite)


def _task_name_clashes(groups: Sequence[str]) -> list[str]:
    problems, seen = [], {}
    for group in groups:
        name = task_name(group)
        if name in RESERVED_TASKS:
            problems.append(f"group '{group}' would be task '{name}', a name the compiler reserves")
        elif name in seen:
            problems.append(f"groups '{seen[name]}' and '{group}' would both be task '{name}'")
        seen.setdefault(name, group)
    return problems
