"""The local variant of a compiled pipeline: the same steps as lightweight components for ``kfp.local``.

``kfp.local.SubprocessRunner`` runs only lightweight Python components, so each step here is a
``@dsl.component`` that calls the very entry point the container runs (:func:`alloy_mtl.deploy.step.main`,
so ``kedro run --nodes ...``) with the arguments :meth:`DeploymentPlan.step_arguments` builds for the
cluster. Steps, their order, dependencies and parameters come from the same plan, inside the same exit
handler that ends the MLflow parent run as the run ended, with the same UI artifacts (a model step's metrics
and confusion matrix, a report step's markdown, logged on KFP's own artifact objects); there is no volume (every step shares the project
directory) and no cluster resources.

    from kfp import local
    local.init(runner=local.SubprocessRunner(use_venv=False))
    build_local_pipeline(plan, project_dir)(epochs=1)
"""

# No ``from __future__ import annotations``: KFP reads the component annotations as objects.
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import dsl
from kfp.dsl import PipelineTask

from alloy_mtl.deploy.compiler import with_signature
from alloy_mtl.deploy.plan import MLFLOW_END_TASK, MLFLOW_TASK, DeploymentPlan

LOCAL_BASE_IMAGE = "python:3.11"  # never pulled: SubprocessRunner runs the components with this interpreter


def _kedro_step(project_dir: str, arguments: list) -> None:
    """Run one step's Kedro nodes through the step entry point (source shipped to ``kfp.local``)."""
    from alloy_mtl.deploy.step import run_and_report

    run_and_report(project_dir, arguments)


def _kedro_model_step(
    project_dir: str,
    arguments: list,
    metrics_file: str,
    metrics: dsl.Output[dsl.Metrics],
    confusion_matrix: dsl.Output[dsl.ClassificationMetrics],
) -> None:
    """A step that evaluates one model: its nodes, then its metrics and confusion matrix for the UI."""
    from alloy_mtl.deploy.step import run_and_report
    from alloy_mtl.deploy.ui_outputs import CONFUSION, METRICS

    artifacts = {METRICS: metrics, CONFUSION: confusion_matrix}
    run_and_report(project_dir, arguments, artifacts, metrics_file=metrics_file)


def _kedro_report_step(
    project_dir: str, arguments: list, markdown_file: str, report: dsl.Output[dsl.Markdown]
) -> None:
    """A step that writes a markdown report: its nodes, then the report for the UI."""
    from alloy_mtl.deploy.step import run_and_report
    from alloy_mtl.deploy.ui_outputs import REPORT

    run_and_report(project_dir, arguments, {REPORT: report}, markdown_file=markdown_file)


def _kedro_suite_step(  # noqa: PLR0917 (KFP passes a component's inputs and outputs by name)
    project_dir: str,
    arguments: list,
    markdown_file: str,
    suite_files: dict,
    report: dsl.Output[dsl.Markdown],
    metrics: dsl.Output[dsl.Metrics],
) -> None:
    """The robustness suite's step: its nodes, then its report and every model's suite summary for the UI."""
    from alloy_mtl.deploy.step import run_and_report
    from alloy_mtl.deploy.ui_outputs import METRICS, REPORT

    artifacts = {REPORT: report, METRICS: metrics}
    run_and_report(project_dir, arguments, artifacts, markdown_file=markdown_file, suite_files=suite_files)


def _open_mlflow_run(run_name: str, experiment: str, kfp_run_id: str) -> str:
    """Open the MLflow parent run, as the cluster's first step does (source shipped to ``kfp.local``)."""
    from alloy_mtl.deploy.mlflow_run import KFP_RUN_TAG, start_parent_run

    return start_parent_run(run_name, experiment or None, {KFP_RUN_TAG: kfp_run_id}) or ""


def _end_mlflow_run(kfp_run_id: str, experiment: str, status: dsl.PipelineTaskFinalStatus) -> None:
    """End the parent run as the run ended, as the cluster's exit task does (source shipped to ``kfp.local``)."""
    from alloy_mtl.deploy.mlflow_run import end_parent_run

    end_parent_run(kfp_run_id, str(status.state).upper(), status.error_message or "", experiment or None)


def _named(func: Callable[..., Any], name: str) -> Callable[..., PipelineTask]:
    component = dsl.component(func, base_image=LOCAL_BASE_IMAGE, install_kfp_package=False)
    component.component_spec.name = name  # the task name; the function name inside stays the same
    return component


def build_local_pipeline(plan: DeploymentPlan, project_dir: Path) -> Callable[..., Any]:
    """A ``@dsl.pipeline`` of ``plan`` whose steps run ``kedro run --nodes ...`` in ``project_dir``."""
    config = plan.config
    names = [parameter.name for parameter in plan.parameters]

    def pipeline(*args: Any) -> None:
        if not config.mlflow.enabled:
            steps(*args)
            return
        end = _named(_end_mlflow_run, MLFLOW_END_TASK)(
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, experiment=config.mlflow.experiment
        )
        end.set_caching_options(False)
        with dsl.ExitHandler(end, name="mlflow-parent-run"):
            steps(*args)

    def steps(*args: Any) -> None:
        values = dict(zip(names, args, strict=True))
        run_id: Any = ""
        if config.mlflow.enabled:
            mlflow_task = _named(_open_mlflow_run, MLFLOW_TASK)(
                run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                experiment=config.mlflow.experiment,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            mlflow_task.set_caching_options(False)
            run_id = mlflow_task.output
        tasks: dict[str, PipelineTask] = {}
        for step in plan.steps:
            common = {"project_dir": str(project_dir), "arguments": plan.step_arguments(step, values, run_id)}
            if step.reports.metrics:
                task = _named(_kedro_model_step, step.task_name)(**common, metrics_file=step.reports.metrics)
            elif step.reports.markdown and step.reports.suite:
                task = _named(_kedro_suite_step, step.task_name)(
                    **common, markdown_file=step.reports.markdown, suite_files=dict(step.reports.suite)
                )
            elif step.reports.markdown:
                task = _named(_kedro_report_step, step.task_name)(
                    **common, markdown_file=step.reports.markdown
                )
            else:
                task = _named(_kedro_step, step.task_name)(**common)
            task.set_display_name(step.group).set_caching_options(False)
            if step.parents:
                task.after(*(tasks[parent] for parent in step.parents))
            tasks[step.group] = task

    signature = {parameter.name: parameter.python_type for parameter in plan.parameters}
    defaults = {parameter.name: parameter.default for parameter in plan.parameters}
    with_signature(pipeline, f"{plan.kfp_name}-local", signature, defaults)
    return dsl.pipeline(name=f"{plan.kfp_name}-local")(pipeline)
