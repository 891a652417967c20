"""Kedro -> Kubeflow Pipelines v2: node grouping, compiling, the step entry points and the KFP client.

``grouping`` turns a Kedro pipeline into node groups, ``plan`` checks a project against
``conf/<env>/kubeflow.yml`` and resolves everything a compiler needs, ``compiler`` writes the KFP v2 IR
YAML of container components, ``local`` builds the lightweight variant that ``kfp.local`` runs, ``step`` and
``mlflow_run`` are what the containers execute, ``client`` uploads, runs and schedules.
"""
