"""The typed model of ``conf/<env>/kubeflow.yml``: every setting's default lives here.

Parsing collects every problem of the file (unknown keys, wrong types, a group without resources) and
raises one :class:`~alloy_mtl.deploy.errors.DeployError` with a line per problem.
"""

from __future__ import annotations

import copy
import keyword
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alloy_mtl.deploy.errors import DeployError

DEFAULT_KEY = "__default__"
CONFIG_FILE = "kubeflow.yml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _quantity(value: Any) -> Any:
    """YAML reads ``cpu_limit: 2`` as an int; Kubernetes quantities are strings."""
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


class RetryPolicy(_Strict):
    """``task.set_retry``: how often a failed step is retried and how long to wait in between."""

    count: int = Field(0, ge=0)
    backoff: str = "60s"
    factor: float = Field(2.0, ge=1.0)
    max_backoff: str = "3600s"


class Toleration(_Strict):
    """One Kubernetes toleration (``kubernetes.add_toleration``)."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = None
    toleration_seconds: int | None = None


class GroupResources(_Strict):
    """What one step (node group) gets from the cluster; a group's entry is merged over ``__default__``."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    gpu: int = Field(0, ge=0)
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    shm_size: str | None = "1Gi"
    retry: RetryPolicy = RetryPolicy()
    caching: bool = True
    timeout_s: int | None = Field(None, gt=0)

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit", "shm_size", mode="before")
    @classmethod
    def _as_quantity(cls, value: Any) -> Any:
        return _quantity(value)


class StorageConfig(_Strict):
    """Where datasets that cross step boundaries live.

    ``pvc``: a volume claim created for each run (``kfp-kubernetes`` ``CreatePVC``) and deleted after a
    successful run; ``existing_pvc``: a claim that outlives runs (``claim_name``), the only kind on which a
    cached step's outputs are still there on the next run. Either is mounted on every step at
    ``<project_dir>/<mount_path>``, where the catalog's relative ``data/...`` paths point.
    KFP's CreatePVC always sets the claim's storage class (an empty one means no dynamic provisioning), so
    ``storage_class`` names one; ``standard`` is what the KFP driver itself falls back to.
    """

    kind: Literal["pvc", "existing_pvc"] = "pvc"
    size: str = "20Gi"
    storage_class: str = "standard"
    access_modes: list[str] = Field(default_factory=lambda: ["ReadWriteMany"])
    claim_name: str | None = None
    mount_path: str = "data"
    delete_after_run: bool = True

    @model_validator(mode="after")
    def _claim_for_existing(self) -> StorageConfig:
        if self.kind == "existing_pvc" and not self.claim_name:
            raise ValueError("storage.kind existing_pvc needs storage.claim_name")
        return self

    @property
    def run_scoped(self) -> bool:
        """True when every run starts on an empty volume."""
        return self.kind == "pvc"


class GroupingConfig(_Strict):
    """How nodes become steps.

    ``nodes`` (node -> group) wins over ``tags`` (tag -> group), then ``by: namespace`` puts a namespaced
    node in its top-level namespace's group; ``pipelines`` (registered Kedro pipeline -> group, first match
    wins) gathers the remaining un-namespaced nodes of a pipeline; any other node is a group of its own.
    """

    by: Literal["namespace", "node"] = "namespace"
    nodes: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    pipelines: dict[str, str] = Field(default_factory=dict)


class FinalStepConfig(_Strict):
    """The step that runs after every other one (the MLflow promotion gate); ``pipeline: null`` turns it off."""

    pipeline: str | None = "promotion"


class ParameterSpec(_Strict):
    """A typed KFP pipeline parameter passed to ``kedro run --params <kedro>=<value>``."""

    kedro: str
    type: Literal["int", "float", "str", "bool"]
    default: Any = None
    description: str | None = None


class SecretEnv(_Strict):
    """Environment variables from a Kubernetes secret (``kubernetes.use_secret_as_env``)."""

    name: str
    keys: dict[str, str]
    optional: bool = False


class MlflowConfig(_Strict):
    """The MLflow parent run that the first step opens and every step joins through ``MLFLOW_RUN_ID``."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    """The MLflow experiment of the parent run; null: the one ``conf/<env>/mlflow.yml`` names (what a
    ``kedro run`` on a workstation uses), so a Kubeflow run and a local run file into one experiment."""


class ClientConfig(_Strict):
    """How the KFP client reaches a real cluster's API (the token itself comes from the environment only:
    ``KFP_TOKEN``, or the file ``KFP_TOKEN_FILE`` / ``token_file`` names)."""

    token_file: str | None = None
    """A file holding the bearer token, e.g. a Kubernetes service-account token mounted from a secret
    (``/var/run/secrets/kubeflow/pipelines/token``); ``KFP_TOKEN_FILE`` wins."""
    ca_bundle: str | None = None
    """CA bundle (PEM) that signed the endpoint's TLS certificate; ``KFP_CA_BUNDLE`` wins; null: the system's."""
    timeout_s: float = Field(30.0, gt=0)
    """Seconds one request may take (connect and read)."""
    retries: int = Field(3, ge=0)
    """Retries of a failed connection or an HTTP 502/503/504 on reading requests (uploads and run creation are
    never repeated)."""


class KubeflowConfig(_Strict):
    """``conf/<env>/kubeflow.yml``."""

    host: str | None = None
    namespace: str | None = None
    client: ClientConfig = ClientConfig()
    experiment: str = "alloy-mtl"
    pipeline_prefix: str = "alloy-mtl"
    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    project_dir: str = "/home/alloy/app"
    storage: StorageConfig = StorageConfig()
    grouping: GroupingConfig = GroupingConfig()
    final_step: FinalStepConfig = FinalStepConfig()
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    mlflow: MlflowConfig = MlflowConfig()
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[SecretEnv] = Field(default_factory=list)
    resources: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("parameters")
    @classmethod
    def _identifiers(cls, parameters: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        bad = [name for name in parameters if not name.isidentifier() or keyword.iskeyword(name)]
        if bad:
            raise ValueError(f"pipeline parameter names must be Python identifiers: {', '.join(bad)}")
        if "mlflow_run_id" in parameters:
            raise ValueError("pipeline parameter name mlflow_run_id is reserved for the MLflow step")
        return parameters

    @field_validator("env", mode="before")
    @classmethod
    def _env_strings(cls, env: Any) -> Any:
        return {key: _quantity(value) for key, value in env.items()} if isinstance(env, Mapping) else env

    def resources_for(self, groups: Iterable[str]) -> dict[str, GroupResources]:
        """Each group's resources: its entry deep-merged over ``__default__``.

        Raises:
            DeployError: naming every group with neither an entry nor a ``__default__``, and every
                entry that does not parse.
        """
        problems: list[str] = []
        resolved: dict[str, GroupResources] = {}
        default = self.resources.get(DEFAULT_KEY)
        default_ok = True
        if default is not None:
            try:
                GroupResources.model_validate(default)
            except ValidationError as error:
                problems.extend(_lines(error, prefix=f"resources.{DEFAULT_KEY}"))
                default_ok = False
        for group in groups:
            entry = self.resources.get(group)
            if entry is None and default is None:
                problems.append(
                    f"group '{group}' has no entry under resources in {CONFIG_FILE} and there is no "
                    f"{DEFAULT_KEY} entry"
                )
                continue
            if entry is None and not default_ok:
                continue  # the default's problems are reported once, above
            merged = _deep_merge(default or {}, entry or {})
            try:
                resolved[group] = GroupResources.model_validate(merged)
            except ValidationError as error:
                problems.extend(_lines(error, prefix=f"resources.{group}"))
        if problems:
            raise DeployError(problems)
        return resolved


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _lines(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{CONFIG_FILE}: {location or '(top level)'}: {message}")
    return lines


def parse_kubeflow_config(raw: Mapping[str, Any] | None) -> KubeflowConfig:
    """Validate the loaded ``kubeflow`` configuration.

    Raises:
        DeployError: one line per problem (missing file, unknown key, wrong type).
    """
    if not raw:
        raise DeployError([f"no {CONFIG_FILE} found in conf/base or the chosen environment"])
    try:
        return KubeflowConfig.model_validate(dict(raw))
    except ValidationError as error:
        raise DeployError(_lines(error)) from None
