"""calibrate_instrument: read the calibration folder, fit the instrument, write it with its report."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.calibrate_instrument.nodes import fit_calibrated_instrument, read_calibration_folder


def create_pipeline(**kwargs) -> Pipeline:
    """Read ``calibration.path``, then fit and report the instrument."""
    return Pipeline(
        [
            Node(
                read_calibration_folder,
                inputs="params:calibration",
                outputs="calibration_radiographs",
                name="read_calibration_folder",
            ),
            Node(
                fit_calibrated_instrument,
                inputs=["calibration_radiographs", "params:calibration", "params:generation"],
                outputs=[
                    "calibrated_instrument",
                    "instrument_calibration_report",
                    "instrument_calibration_figure",
                ],
                name="fit_calibrated_instrument",
            ),
        ]
    )
