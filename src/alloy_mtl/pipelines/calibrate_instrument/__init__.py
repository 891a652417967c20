"""calibrate_instrument: a lab's calibration radiographs -> the simulator's instrument fitted to them."""

from alloy_mtl.pipelines.calibrate_instrument.pipeline import create_pipeline

__all__ = ["create_pipeline"]
