"""How far the wedge summary and the instrument settings alone take a classifier, on validation conditions.

A CNN of the default recipe reads the wedge fit's coefficients (``training.wedge_summary``) and the instrument's
settings (``training.instrument_conditioning``) beside its image features. This benchmark trains a plain MLP
(scikit-learn, two hidden layers of 256) on those numbers alone, the training split's recorded settings with the
coefficients of the bad-pixel-corrected images, once on a class-blind random 1,050 training images (the CNNs'
budget, ``training.max_train_images``) and once on all of them (the FNN's), and scores it (macro AP) on
``bench_robust_levers``'s validation conditions, told the instrument fitted from each condition's images, as
the models are. It is the level a CNN's image path must not pull the model below.

    python benchmarks/bench_summary_ceiling.py [--val-images 600] [--seed 0]

Writes ``benchmarks/results/bench_summary_ceiling.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from machine import machine_name
from sklearn.metrics import average_precision_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import RESULTS, _conf, training_data  # noqa: E402
from bench_robust_levers import LEVERS, validation_conditions  # noqa: E402

from alloy_mtl.constants import ALLOYS, INSTRUMENT_COLUMN_PREFIX  # noqa: E402
from alloy_mtl.mtl.loading.preprocess import prepare_images  # noqa: E402
from alloy_mtl.mtl.models.input_transform import wedge_coefficients  # noqa: E402
from alloy_mtl.physics.instrument import RECORDED_SETTINGS  # noqa: E402

logger = logging.getLogger("bench_summary_ceiling")
LEVER = "units64_tolerances_bad_pixels_conditioned_summary"
CNN_IMAGES = 1050


def summary_features(images: np.ndarray, settings: np.ndarray) -> np.ndarray:
    """The wedge fit's coefficients of the bad-pixel-corrected images beside the settings: (N, 3C + K)."""
    corrected = prepare_images(torch.from_numpy(images), size=None, bad_pixels="neighbour_median")
    return np.hstack([wedge_coefficients(corrected).numpy(), settings])


def macro_ap(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float:
    """Mean over the alloys of the one-vs-rest average precision."""
    return float(
        np.mean([average_precision_score(labels == a, probabilities[:, classes.index(a)]) for a in ALLOYS])
    )


def main() -> None:
    """Train the summary MLP at both budgets and score it on every validation condition."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--val-images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    generation, _ = _conf()
    images, metadata = training_data({**generation, **LEVERS[LEVER][0]}, int(generation["n_images"]))
    columns = [f"{INSTRUMENT_COLUMN_PREFIX}{key}" for key in RECORDED_SETTINGS]
    features = summary_features(images, metadata[columns].to_numpy())
    labels = metadata["alloy"].to_numpy()
    train = np.flatnonzero((metadata["split"] == "train").to_numpy())
    conditions = validation_conditions(generation, args.val_images)
    rows = []
    for budget in (CNN_IMAGES, None):
        rows_used = train if budget is None else np.random.default_rng(args.seed).choice(train, budget, False)
        scaler = StandardScaler().fit(features[rows_used])
        model = MLPClassifier((256, 256), max_iter=500, random_state=args.seed)
        model.fit(scaler.transform(features[rows_used]), labels[rows_used])
        scores = {}
        for name, (x, meta, fitted) in conditions.items():
            told = np.tile([fitted[key] for key in RECORDED_SETTINGS], (len(x), 1))
            probabilities = model.predict_proba(scaler.transform(summary_features(x, told)))
            scores[name] = round(macro_ap(meta["alloy"].to_numpy(), probabilities, list(model.classes_)), 4)
        logger.info("%d training images: %s", len(rows_used), scores)
        rows.append({"training_images": len(rows_used), "scores": scores})
    command = "python benchmarks/bench_summary_ceiling.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / "bench_summary_ceiling"
    stem.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    names = list(rows[0]["scores"])
    lines = [
        "# The wedge summary and the instrument settings alone (an MLP), on validation conditions",
        "",
        f"`{command.strip()}` on {machine_name()}, {datetime.now(UTC):%Y-%m-%d}. Macro AP; told the instrument",
        "fitted from each condition's images (see the script's docstring).",
        "",
        "| training images | " + " | ".join(names) + " | worst |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for row in rows:
        values = [row["scores"][n] for n in names]
        lines.append(
            f"| {row['training_images']} | "
            + " | ".join(f"{v:.3f}" for v in values)
            + f" | {min(values):.3f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    logger.info("wrote %s.{json,md}", stem)


if __name__ == "__main__":
    main()
