"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks, executed in Last-In-First-Out order: the parameter check runs first, so a
# wrong parameter stops the run before MLflow opens it. MLflow tracking: one parent run per `kedro run`,
# one nested run per model (see alloy_mtl.hooks).
from alloy_mtl.hooks import MlflowTrackingHooks
from alloy_mtl.parameter_hooks import CalibratedInstrumentHooks, ParameterCheckHooks

HOOKS = (MlflowTrackingHooks(), ParameterCheckHooks(), CalibratedInstrumentHooks())

# Installed plugins for which to disable hook auto-registration. MLflow tracking is wired by the project
# (see tracking/); kedro-mlflow is no dependency, but an environment installed before it was dropped may
# still hold it, and its auto-registered hooks would open MLflow runs of their own beside the project's.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (`--env paper`, conf/local) override single nested keys instead of whole sections.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "mlflow": "soft"},
    # conf/<env>/mlflow.yml: tracking URI and experiment (read by alloy_mtl.hooks)
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
