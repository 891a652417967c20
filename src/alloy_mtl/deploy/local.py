"""The local variant of a compiled pipeline: the same steps as lightweight components for ``kfp.local``.

``kfp.local.SubprocessRunner`` runs only lightweight Python components, so each step here is a
``@dsl.component`` that calls the very entry point the container runs (:func:`alloy_mtl.deploy.step.main`,
so ``kedro run --nodes ...``) with the arguments :meth:`DeploymentPlan.step_arguments` builds for the
cluster. Steps, their order, dependencies and parameters come from the same plan, inside the same exit
handler that ends the MLflow parent run as the run ended; there is no volume (every step shares the project
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
    from alloy_mtl.deploy.step import main

    status = main([*arguments, "--project-dir", project_dir])
    if status != 0:
        raise RuntimeError(f"kedro run exited with status {status}: {' '.join(arguments)}")


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
            task = _named(_kedro_step, step.task_name)(
                project_dir=str(project_dir), arguments=plan.step_arguments(step, values, run_id)
            )
            task.set_display_name(step.group).set_caching_options(False)
            if step.parents:
                task.after(*(tasks[parent] for parent in step.parents))
            tasks[step.group] = task

    signature = {parameter.name: parameter.python_type for parameter in plan.parameters}
    defaults = {parameter.name: parameter.default for parameter in plan.parameters}
    with_signature(pipeline, f"{plan.kfp_name}-local", signature, defaults)
    return dsl.pipeline(name=f"{plan.kfp_name}-local")(pipeline)
