"""Kedro datasets for the project's own storage formats (the only Kedro-aware code outside pipelines/)."""

from alloy_mtl.datasets.optional_csv_dataset import OptionalCSVDataset
from alloy_mtl.datasets.optional_json_dataset import OptionalJSONDataset
from alloy_mtl.datasets.optional_pickle_dataset import OptionalPickleDataset
from alloy_mtl.datasets.torch_bundle_dataset import TorchBundleDataset
from alloy_mtl.datasets.xray_store_dataset import XrayStoreDataset

__all__ = [
    "OptionalCSVDataset",
    "OptionalJSONDataset",
    "OptionalPickleDataset",
    "TorchBundleDataset",
    "XrayStoreDataset",
]
