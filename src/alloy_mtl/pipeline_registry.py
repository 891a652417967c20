"""Project pipelines: data_generation, data_processing, train_<arch>, tune_<arch>, evaluation, robustness,
promotion, inference, unknown_materials, calibrate_instrument, evaluate_external and train_all."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from alloy_mtl.pipelines import (
    alloy_properties,
    calibrate_instrument,
    data_processing,
    evaluate_external,
    evaluation,
    inference,
    promotion,
    robustness,
    training,
    tuning,
    unknown_materials,
)
from alloy_mtl.pipelines.training import ARCHITECTURES


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``train_<arch>`` trains and evaluates one architecture on the existing model input; ``training`` and
    ``evaluation`` cover all architectures; ``promotion`` runs the MLflow promotion gate over already-logged
    runs; ``robustness`` scores every trained model on the robustness suite (the same specimens re-imaged
    under named instrument conditions: unseen detector units, beam and detector tolerances; the weighted
    ensemble's weights are chosen again on the validation split, as the evaluation does); ``alloy_properties``
    runs the STL vs MTL alloy-property study; ``tune_<arch>`` and ``tune_all`` run Population Based Training of
    the optimizer, lr and weight decay (the ``tune`` extra); ``inference`` predicts a folder of images with the
    champion; ``unknown_materials`` fits the physics unknown-designation score inference applies beside the
    models' own; ``calibrate_instrument`` fits the simulator's instrument to a lab's calibration radiographs
    (``generation.instrument: calibrated`` then simulates it); ``evaluate_external`` scores every trained model,
    the ensembles and the physics limit on a lab's labelled folder; ``train_all`` runs everything from data to the comparison and the robustness suite, ending with
    the gate (which decides on the suite), and is the default.

    ``registry`` is a deprecated alias of ``promotion`` (the gate's former name), kept so that
    scheduled ``kedro run --pipeline registry`` jobs and Kubeflow pipelines compiled with
    ``final_step.pipeline: registry`` keep working; it will be removed in a later release.
    """
    processing = data_processing.create_pipeline()
    per_arch = {
        arch: training.create_pipeline(arch) + evaluation.create_pipeline(arch) for arch in ARCHITECTURES
    }
    all_training = sum((training.create_pipeline(arch) for arch in ARCHITECTURES), Pipeline([]))
    all_evaluation = sum(
        (evaluation.create_pipeline(arch) for arch in ARCHITECTURES),
        evaluation.create_comparison_pipeline(ARCHITECTURES),
    )
    # inside train_all the comparison waits for the physics unknown score's own evaluation and shows it
    all_evaluation_with_physics = sum(
        (evaluation.create_pipeline(arch) for arch in ARCHITECTURES),
        evaluation.create_comparison_pipeline(ARCHITECTURES, with_unknown_materials=True),
    )
    pipelines: dict[str, Pipeline] = {
        "data_generation": processing.only_nodes("acquire_dataset"),
        "data_processing": processing,
        "training": all_training,
        "evaluation": all_evaluation,
        **{f"train_{arch}": pipe for arch, pipe in per_arch.items()},
        # over the trained models, with the ensemble's weights chosen on the validation split; see the docstring
        "robustness": robustness.create_pipeline(ARCHITECTURES)
        + evaluation.create_selection_pipeline(ARCHITECTURES),
        "promotion": promotion.create_pipeline(),
        "inference": inference.create_pipeline(),
        # the physics unknown-designation score folder inference applies beside the models' own
        "unknown_materials": unknown_materials.create_pipeline(),
        "alloy_properties": alloy_properties.create_pipeline(),
        # the simulator's instrument fitted to a lab's calibration radiographs; not part of train_all
        "calibrate_instrument": calibrate_instrument.create_pipeline(),
        # every trained model, the ensembles and the physics limit on a lab's labelled folder
        "evaluate_external": evaluate_external.create_pipeline(
            ARCHITECTURES
        ),  # the tabular study; not part of train_all
        # Population Based Training (Ray Tune extra); not part of train_all
        **{f"tune_{arch}": tuning.create_pipeline(arch) for arch in ARCHITECTURES},
        "tune_all": sum((tuning.create_pipeline(arch) for arch in ARCHITECTURES), Pipeline([])),
    }
    pipelines["registry"] = pipelines["promotion"]  # deprecated: the gate's old name (see the docstring)
    suite = pipelines["robustness"]
    gate = promotion.create_pipeline(
        after={
            f"{arch}_{key}": f"{arch}.{output}"
            for arch in ARCHITECTURES
            for key, output in (
                ("metrics", "metrics"),
                ("robustness", "robustness"),
                ("suite_predictions", "robustness_predictions"),
            )
        },
        instruments="robustness_instruments",
    )
    pipelines["train_all"] = (
        processing
        + all_training
        + all_evaluation_with_physics
        + suite
        + gate
        + pipelines["unknown_materials"]
    )
    pipelines["__default__"] = pipelines["train_all"]
    return pipelines
