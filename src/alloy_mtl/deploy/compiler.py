"""Build and compile the KFP v2 pipeline of a :class:`~alloy_mtl.deploy.plan.DeploymentPlan`.

One container component per step runs ``python -m alloy_mtl.deploy.step`` (``kedro run --nodes ...``) in
the project image. Around them: a ``CreatePVC`` task making the run's shared volume (mounted on every
step where the catalog's ``data/`` is), an ``mlflow-start-run`` task whose output every step receives as
``MLFLOW_RUN_ID``, and a ``DeletePVC`` task after the last steps. With MLflow on, all of them run inside a
``dsl.ExitHandler`` whose exit task ``mlflow-end-run`` ends the parent run as the Kubeflow run ended
(:func:`alloy_mtl.deploy.mlflow_run.end_parent_run`).
"""

# No ``from __future__ import annotations``: KFP reads the component annotations as objects.
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl import PipelineTask

from alloy_mtl.deploy.config import GroupResources, KubeflowConfig
from alloy_mtl.deploy.mlflow_run import KFP_RUN_TAG
from alloy_mtl.deploy.plan import FINGERPRINT_TASK, MLFLOW_END_TASK, MLFLOW_TASK, DeploymentPlan, Step
from alloy_mtl.deploy.ui_outputs import CONFUSION, METRICS, REPORT

logger = logging.getLogger(__name__)

MLFLOW_OUTPUT = "run_id"
SHM_VOLUME = "dshm"
PVC_SUFFIX = "-alloy-mtl-data"
STEP_MODULE = "alloy_mtl.deploy.step"
MLFLOW_MODULE = "alloy_mtl.deploy.mlflow_run"
FINGERPRINT_MODULE = "alloy_mtl.deploy.fingerprint"
FINGERPRINT_OUTPUT = "fingerprint"
FINGERPRINT_INPUT = "data_fingerprint"


def with_signature(
    func: Callable[..., Any],
    name: str,
    parameters: Mapping[str, type],
    defaults: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """Give ``func(*args)`` the typed signature KFP reads to build a component's or pipeline's inputs."""
    defaults = defaults or {}
    func.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                key,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=kind,
                default=defaults.get(key, inspect.Parameter.empty),
            )
            for key, kind in parameters.items()
        ]
    )
    func.__name__ = name.replace("-", "_")
    func.__qualname__ = func.__name__
    return func


def project_path(config: KubeflowConfig, relative: str) -> str:
    """A path in the image, relative ones under the project directory."""
    path = PurePosixPath(relative)
    return str(path if path.is_absolute() else PurePosixPath(config.project_dir) / path)


def report_outputs(step: Step) -> dict[str, Any]:
    """The output artifacts a step shows in the Kubeflow UI: ``metrics`` and ``confusion_matrix`` for a step
    that evaluates one model, ``metrics`` for one that runs the robustness suite, ``report`` for one that writes a
    markdown report."""
    outputs: dict[str, Any] = {}
    if step.reports.metrics or step.reports.suite:
        outputs[METRICS] = dsl.Output[dsl.Metrics]
    if step.reports.metrics:
        outputs[CONFUSION] = dsl.Output[dsl.ClassificationMetrics]
    if step.reports.markdown:
        outputs[REPORT] = dsl.Output[dsl.Markdown]
    return outputs


def step_component(plan: DeploymentPlan, step: Step) -> Callable[..., PipelineTask]:
    """The container component of one step: its inputs are the step's parameters and the MLflow run id, its
    outputs the UI artifacts of :func:`report_outputs`, filled by the step after its nodes ran."""
    names = list(step.parameters)
    outputs = report_outputs(step)
    types = {parameter.name: parameter.python_type for parameter in plan.parameters}
    inputs = {name: types[name] for name in names} | {"mlflow_run_id": str}
    if step.fingerprinted:
        inputs[FINGERPRINT_INPUT] = str
    config = plan.config

    def component(*args: Any) -> dsl.ContainerSpec:
        values = dict(zip(inputs, args, strict=False))
        arguments = plan.step_arguments(step, values, values["mlflow_run_id"])
        if step.fingerprinted:
            arguments += ["--data-fingerprint", values[FINGERPRINT_INPUT]]
        artifacts = dict(zip(outputs, args[len(inputs) :], strict=True))
        if artifacts:
            arguments += ["--kfp-output-file", dsl.PIPELINE_TASK_EXECUTOR_OUTPUT_PATH_PLACEHOLDER]
            for name, artifact in artifacts.items():
                arguments += ["--kfp-artifact", name, artifact.path, artifact.uri]
        return dsl.ContainerSpec(
            image=config.image,
            command=["python", "-m", STEP_MODULE],
            args=[*arguments, "--project-dir", config.project_dir],
        )

    return dsl.container_component(with_signature(component, step.task_name, inputs | outputs))


def fingerprint_component(plan: DeploymentPlan) -> Callable[..., PipelineTask]:
    """The container component hashing the data source's files (:mod:`alloy_mtl.deploy.fingerprint`); its
    inputs are the pipeline parameters that override the data source."""
    names = list(plan.data_source_parameters().values())
    config = plan.config

    def component(*args: Any) -> dsl.ContainerSpec:
        values = dict(zip(names, args[: len(names)], strict=True))
        return dsl.ContainerSpec(
            image=config.image,
            command=["python", "-m", FINGERPRINT_MODULE],
            args=[
                *plan.data_source_arguments(values),
                "--project-dir",
                config.project_dir,
                "--output",
                args[len(names)],
            ],
        )

    signature = {name: str for name in names} | {FINGERPRINT_OUTPUT: dsl.OutputPath(str)}
    return dsl.container_component(with_signature(component, FINGERPRINT_TASK, signature))


def mlflow_component(config: KubeflowConfig) -> Callable[..., PipelineTask]:
    """The container component that opens the MLflow parent run and outputs its id."""

    def component(run_id: dsl.OutputPath(str)) -> dsl.ContainerSpec:  # type: ignore[valid-type]  # noqa: F821
        return dsl.ContainerSpec(
            image=config.image,
            command=["python", "-m", MLFLOW_MODULE],
            args=[
                "--output",
                run_id,
                "--run-name",
                dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                "--tag",
                f"{KFP_RUN_TAG}={dsl.PIPELINE_JOB_ID_PLACEHOLDER}",
            ],
        )

    component.__name__ = MLFLOW_TASK.replace("-", "_")
    return dsl.container_component(component)


def mlflow_end_component(config: KubeflowConfig) -> Callable[..., PipelineTask]:
    """The exit handler's container component: ends the parent run with the Kubeflow run's final status."""

    def component(status: dsl.PipelineTaskFinalStatus) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(
            image=config.image,
            command=["python", "-m", MLFLOW_MODULE],
            args=["--end", "--kfp-run-id", dsl.PIPELINE_JOB_ID_PLACEHOLDER, "--final-status", status],
        )

    component.__name__ = MLFLOW_END_TASK.replace("-", "_")
    return dsl.container_component(component)


def _environment(task: PipelineTask, config: KubeflowConfig) -> None:
    env = dict(config.env)
    if config.mlflow.tracking_uri:
        env["MLFLOW_TRACKING_URI"] = config.mlflow.tracking_uri
    if config.mlflow.experiment:
        env["MLFLOW_EXPERIMENT_NAME"] = config.mlflow.experiment
    for key in sorted(env):
        task.set_env_variable(key, env[key])
    for secret in config.secrets:
        kubernetes.use_secret_as_env(
            task, secret.name, dict(sorted(secret.keys.items())), optional=secret.optional
        )
    kubernetes.set_image_pull_policy(task, config.image_pull_policy)


def _resources(task: PipelineTask, resources: GroupResources) -> None:
    if resources.cpu_request:
        task.set_cpu_request(resources.cpu_request)
    if resources.cpu_limit:
        task.set_cpu_limit(resources.cpu_limit)
    if resources.memory_request:
        task.set_memory_request(resources.memory_request)
    if resources.memory_limit:
        task.set_memory_limit(resources.memory_limit)
    if resources.gpu:
        task.set_accelerator_type(resources.accelerator_type)
        task.set_accelerator_limit(resources.gpu)
    for key in sorted(resources.node_selector):
        kubernetes.add_node_selector(task, key, resources.node_selector[key])
    for toleration in resources.tolerations:
        kubernetes.add_toleration(task, **toleration.model_dump())
    if resources.shm_size:
        kubernetes.empty_dir_mount(
            task,
            volume_name=SHM_VOLUME,
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=resources.shm_size,
        )
    if resources.retry.count:
        task.set_retry(
            num_retries=resources.retry.count,
            backoff_duration=resources.retry.backoff,
            backoff_factor=resources.retry.factor,
            backoff_max_duration=resources.retry.max_backoff,
        )
    if resources.timeout_s:
        kubernetes.set_timeout(task, resources.timeout_s)


def _fingerprint_task(plan: DeploymentPlan, values: Mapping[str, Any], claim: Any) -> Any:
    """The never cached ``data-fingerprint`` task's output where a step is fingerprinted, else None."""
    if not any(step.fingerprinted for step in plan.steps):
        return None
    config = plan.config
    task = fingerprint_component(plan)(
        **{name: values[name] for name in plan.data_source_parameters().values()}
    )
    task.set_display_name("fingerprint the data").set_caching_options(False)
    _environment(task, config)
    kubernetes.mount_pvc(task, pvc_name=claim, mount_path=project_path(config, config.storage.mount_path))
    return task.outputs[FINGERPRINT_OUTPUT]


def build_pipeline(plan: DeploymentPlan) -> Callable[..., Any]:
    """The ``@dsl.pipeline`` of ``plan``: typed parameters, one task per step, dependencies as planned."""
    config = plan.config
    names = [parameter.name for parameter in plan.parameters]

    def pipeline(*args: Any) -> None:
        if not config.mlflow.enabled:
            steps(*args)
            return
        end = mlflow_end_component(config)()
        end.set_display_name("end MLflow run").set_caching_options(False)
        _environment(end, config)
        with dsl.ExitHandler(end, name="mlflow-parent-run"):
            steps(*args)

    def steps(*args: Any) -> None:
        values = dict(zip(names, args, strict=True))
        storage = config.storage
        if storage.run_scoped:
            create = kubernetes.CreatePVC(
                pvc_name_suffix=PVC_SUFFIX,
                access_modes=list(storage.access_modes),
                size=storage.size,
                storage_class_name=storage.storage_class,
            )
            create.set_display_name("create shared volume").set_caching_options(False)
            claim: Any = create.outputs["name"]
        else:
            claim = storage.claim_name
        run_id: Any = ""
        if config.mlflow.enabled:
            mlflow_task = mlflow_component(config)()
            mlflow_task.set_display_name("open MLflow run").set_caching_options(False)
            _environment(mlflow_task, config)
            run_id = mlflow_task.outputs[MLFLOW_OUTPUT]

        fingerprint = _fingerprint_task(plan, values, claim)

        tasks: dict[str, PipelineTask] = {}
        for step in plan.steps:
            extra = {FINGERPRINT_INPUT: fingerprint} if step.fingerprinted else {}
            task = step_component(plan, step)(
                **{name: values[name] for name in step.parameters}, mlflow_run_id=run_id, **extra
            )
            task.set_display_name(step.group)
            task.set_caching_options(step.caching)
            _resources(task, step.resources)
            _environment(task, config)
            kubernetes.mount_pvc(task, pvc_name=claim, mount_path=project_path(config, storage.mount_path))
            if step.parents:
                task.after(*(tasks[parent] for parent in step.parents))
            tasks[step.group] = task

        if storage.run_scoped and storage.delete_after_run:
            waited_for = {parent for step in plan.steps for parent in step.parents}
            leaves = [tasks[step.group] for step in plan.steps if step.group not in waited_for]
            delete = kubernetes.DeletePVC(pvc_name=claim).after(*leaves)
            delete.set_display_name("delete shared volume").set_caching_options(False)

    signature = {parameter.name: parameter.python_type for parameter in plan.parameters}
    defaults = {parameter.name: parameter.default for parameter in plan.parameters}
    with_signature(pipeline, plan.kfp_name, signature, defaults)
    description = (
        f"Kedro pipeline '{plan.pipeline}' of alloy-mtl (conf env '{plan.env}'), one step per node group. "
        f"Refresh: kedro kubeflow compile --pipeline {plan.pipeline} --env {plan.env}"
    )
    return dsl.pipeline(name=plan.kfp_name, description=description)(pipeline)


def compile_plan(plan: DeploymentPlan, output: Path) -> Path:
    """Write the KFP v2 IR YAML of ``plan`` to ``output``; the same plan gives the same bytes."""
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(plan), package_path=str(output))
    logger.info("Compiled Kedro pipeline '%s' (%d steps) to %s", plan.pipeline, len(plan.steps), output)
    return output
