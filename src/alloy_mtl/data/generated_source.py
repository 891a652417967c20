"""The default data source: the physics-simulated wedge radiographs, rendered into a scratch memory map."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from alloy_mtl.data.store import XrayData
from alloy_mtl.physics.simulator import SimulationConfig, plan_dataset, simulate_dataset


def generate_xray_data(params: Mapping[str, Any] | None) -> XrayData:
    """Simulate the dataset described by ``params`` (keys of :class:`SimulationConfig`).

    The images are rendered chunk by chunk into an anonymous temporary file mapped into memory, so a dataset
    many times larger than RAM can be generated and then written to a store chunk-wise; the scratch file is
    deleted by the operating system once the last reference to the array goes.
    """
    config = SimulationConfig.from_params(params)
    n_images = len(plan_dataset(config).metadata)
    shape = (n_images, len(config.kv), config.image_size, config.image_size)
    scratch = np.memmap(tempfile.TemporaryFile(prefix="alloy-mtl-"), dtype=np.float32, mode="w+", shape=shape)
    images, metadata = simulate_dataset(config, out=scratch)
    return XrayData(images=images, metadata=metadata)
