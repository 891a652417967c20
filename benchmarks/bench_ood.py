"""Benchmark of unknown-material (out-of-distribution) scores on the models of a finished train_all run.

For every trained architecture found under ``<project>/data/06_models``: the model's Mahalanobis score
(``training.ood``, fitted here on the run's training split and referenced on its validation split, as the
recipe does), beside the max-softmax and energy scores of its logits and the physics-limit estimator's
goodness of fit (best-alloy log-likelihood under the instrument it fits from the known batch, labels unused)
and two blind scores on the pattern of the estimator's per-alloy fits (each alloy's log-likelihood relative to the
best, the best one, its thickness): the mean distance to the ``KNN_K`` nearest of a reference, either the run's
training split (each image under the instrument it recorded: ``physics_knn``, what a model could carry) or fresh
specimens of the five alloys at the known batch's instrument (``physics_knn_at_instrument``: the in-distribution
density a blind detector could at best know). Beside them, how separable each designation is for a classifier
told it (:func:`separability`).
Known images: fresh balanced specimens imaged by the evaluation set's detector unit (one the models never saw);
unknown: the generated OOD set (``evaluation.ood``) imaged by the same instrument. Inputs the serving guards
refuse count as caught. AUROC (specimen-bootstrap 95 % interval), FPR at 95 % TPR, and at the model's own
threshold for the served default rate of rejected validation images (1 %), the shares of known and unknown images rejected.

Run: ``python benchmarks/bench_ood.py [--project .] [--archs fnn,resnet18] [--per-material 60]`` ->
benchmarks/results/bench_ood{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.config import OmegaConfigLoader
from machine import machine_name
from scipy.special import logsumexp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import NearestNeighbors

from alloy_mtl.constants import ALLOYS, INSTRUMENT_COLUMN_PREFIX
from alloy_mtl.datasets import TorchBundleDataset, XrayStoreDataset
from alloy_mtl.evaluation.evaluation_set import (
    batch_instrument,
    evaluation_set_config,
    simulate_conformal_set,
)
from alloy_mtl.evaluation.ood import ood_metrics, simulate_ood_set
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.evaluation.physics_unknown import physics_features
from alloy_mtl.mtl.labelled_prediction import task_targets
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.loading.input_guards import refused_images
from alloy_mtl.mtl.loading.instrument_settings import settings_array
from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.models.ood import DEFAULT_REJECT_RATE
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.ood import features_of, fit_ood
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
ARCHS = ("fnn", "efficientnet_b0", "resnet18", "resnet34", "resnet50", "vgg16")
REJECT_RATE = DEFAULT_REJECT_RATE
KNN_K = 10
logger = logging.getLogger("bench_ood")


def _loader(
    bundle: dict, model: torch.nn.Module, images: np.ndarray, metadata: pd.DataFrame, instrument=None
):
    keys = model.instrument_keys
    settings = settings_array(keys, len(images), metadata, instrument) if keys else None
    tasks = parse_tasks(bundle["tasks"])
    targets = task_targets(metadata, tasks) if "alloy" in metadata else {}
    size = int(bundle["image_size"])
    dataset = ArrayTaskDataset(
        images,
        targets,
        target_stats={k: v for k, v in model.target_scaler.stats().items() if k in targets},
        image_size=None if images.shape[-1] == size else size,
        bad_pixels=bundle_bad_pixels(bundle),
        settings=settings,
    )
    return make_dataloader(dataset, 256)


def _scores(model: torch.nn.Module, loader, refused: np.ndarray) -> dict[str, np.ndarray]:
    features, _ = features_of(model, loader)
    with torch.inference_mode():
        logits = model.calibration(model.forward_heads(features))["alloy"].double().numpy()
        maha = model.ood(features).double().numpy()
    probs = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    scores = {"mahalanobis": maha, "max_softmax": -probs.max(axis=1), "energy": -logsumexp(logits, axis=1)}
    return {name: np.where(refused, np.inf, value) for name, value in scores.items()}


def _family_metrics(known: dict, unknown: dict, k_groups, u_meta: pd.DataFrame, thresholds: dict) -> dict:
    out: dict[str, Any] = {
        "_quantiles": {
            name: {
                "known": np.quantile(values, [0.5, 0.95, 0.99, 1.0]).tolist(),
                **{
                    family: np.quantile(
                        unknown[name][(u_meta["family"] == family).to_numpy()], [0.0, 0.05, 0.5]
                    ).tolist()
                    for family in u_meta["family"].unique()
                },
            }
            for name, values in known.items()
        }
    }
    groups = {family: (u_meta["family"] == family).to_numpy() for family in u_meta["family"].unique()}
    near = u_meta.loc[u_meta["family"] == "near", "material"].unique()
    groups |= {f"near:{material}": (u_meta["material"] == material).to_numpy() for material in near}
    for group, rows in groups.items():
        out[group] = {
            name: ood_metrics(
                known[name],
                k_groups,
                unknown[name][rows],
                u_meta["specimen_id"].to_numpy()[rows],
                threshold=thresholds.get(name),
                n_resamples=0 if group.startswith("near:") else 200,
            )
            for name in known
        }
    return out


def _reference_features(
    estimator: PhysicsLimitEstimator, images: np.ndarray, metadata: pd.DataFrame
) -> np.ndarray:
    """:func:`physics_features` of labelled known-alloy images, each under the instrument its metadata records
    (``instrument_<setting>`` columns; the others nominal), as a model's training split is known."""
    columns = [c for c in metadata.columns if c.startswith(INSTRUMENT_COLUMN_PREFIX)]
    nominal = nominal_instrument(estimator.config)
    if not columns:
        estimator.use_instrument(nominal)
        return physics_features(estimator, images)
    features = np.empty((len(images), len(ALLOYS) + 2))
    for values, rows in metadata.groupby(columns, sort=False).indices.items():
        recorded = {
            c.removeprefix(INSTRUMENT_COLUMN_PREFIX): float(v) for c, v in zip(columns, values, strict=True)
        }
        estimator.use_instrument(nominal | recorded)
        features[rows] = physics_features(estimator, images[rows])
    return features


def knn_score(reference: np.ndarray, features: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Mean distance of each row of ``features`` to its ``k`` nearest ``reference`` rows, every feature scaled by
    the reference's spread: high where no known image fits the alloys the way this one does."""
    centre, spread = reference.mean(axis=0), reference.std(axis=0) + 1e-9
    index = NearestNeighbors(n_neighbors=k).fit((reference - centre) / spread)
    distances, _ = index.kneighbors((features - centre) / spread)
    return distances.mean(axis=1)


def separability(
    known: np.ndarray,
    unknown: np.ndarray,
    known_groups: np.ndarray,
    ood_meta: pd.DataFrame,
    *,
    folds: int = 5,
    max_iter: int = 200,
) -> dict[str, float]:
    """Per near designation, how separable it is from the five alloys at all: the out-of-fold AUROC (specimen-
    grouped ``folds``-fold) of a classifier *told* that designation, trained on the physics estimator's fits
    (:func:`physics_features`) of the known images against that designation's. No detector that is not told
    the designation can do better than one that is, so this estimates the ceiling (from below: a finite
    classifier on 7 numbers per image)."""
    ceilings = {}
    near = ood_meta["family"].to_numpy() == "near"
    for material in sorted(ood_meta.loc[near, "material"].unique()):
        rows = (ood_meta["material"] == material).to_numpy()
        x = np.vstack([known, unknown[rows]])
        y = np.r_[np.zeros(len(known)), np.ones(int(rows.sum()))]
        groups = np.r_[known_groups.astype(str), ood_meta.loc[rows, "specimen_id"].astype(str).to_numpy()]
        scores = np.zeros(len(y))
        for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
            model = HistGradientBoostingClassifier(max_iter=max_iter, class_weight="balanced", random_state=0)
            scores[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        ceilings[str(material)] = float(roc_auc_score(y, scores))
    return ceilings


def run(project: Path, archs: list[str], per_material: int, n_known: int) -> dict[str, Any]:
    """Every requested architecture's and the physics estimator's OOD metrics (see the module docstring)."""
    params = OmegaConfigLoader(
        str(project / "conf"), base_env="base", default_run_env="local", merge_strategy={"parameters": "soft"}
    )["parameters"]
    generation = params["generation"]
    config = evaluation_set_config(generation, EvaluationSetParams(n_images=n_known))
    known_images, known_meta = simulate_dataset(config)
    ood_images, ood_meta = simulate_ood_set(config, per_material)
    known_groups = known_meta["specimen_id"].to_numpy()
    refused_known, refused_ood = refused_images(known_images), refused_images(ood_images)
    instrument = batch_instrument(generation, known_images)
    results: dict[str, Any] = {
        "n_known": len(known_images),
        "n_unknown": len(ood_images),
        "refused_known": int(refused_known.sum()),
        "refused_by_family": ood_meta.assign(r=refused_ood)
        .groupby("family")["r"]
        .sum()
        .astype(int)
        .to_dict(),
        "models": {},
    }

    base = SimulationConfig.from_params(generation)
    start = time.perf_counter()
    estimator = PhysicsLimitEstimator.within_declared(base)
    estimator.fit_instrument(known_images)
    known_features = physics_features(estimator, known_images)
    ood_features = physics_features(estimator, ood_images)
    # the in-distribution reference at the batch's instrument: fresh specimens of the five alloys imaged by
    # validation units at the nominal instrument the known batch was taken with (a blind detector's best case)
    at_instrument = physics_features(estimator, simulate_conformal_set(generation, n_known * 4)[0])
    data = project / "data"
    model_input = XrayStoreDataset(path=str(data / "05_model_input" / "xray"), dtype="float16").load()
    split = model_input.metadata["split"].to_numpy()
    train = split == "train"
    training = _reference_features(
        estimator, np.asarray(model_input.images[train], np.float32), model_input.metadata[train]
    )

    def physics_scores(features: np.ndarray, refused: np.ndarray) -> dict[str, np.ndarray]:
        scores = {
            "physics_fit": -features[:, len(ALLOYS)],  # the best alloy's log-likelihood: high is typical
            "physics_knn": knn_score(training, features),
            "physics_knn_at_instrument": knn_score(at_instrument, features),
        }
        return {name: np.where(refused, np.inf, value) for name, value in scores.items()}

    physics_known = physics_scores(known_features, refused_known)
    physics_ood = physics_scores(ood_features, refused_ood)
    results["models"]["physics_limit"] = _family_metrics(
        physics_known, physics_ood, known_groups, ood_meta, {}
    )
    results["separability"] = separability(known_features, ood_features, known_groups, ood_meta)
    logger.info("physics: %.0f s", time.perf_counter() - start)
    for arch in archs:
        path = data / "06_models" / arch / "model.pt"
        if not path.is_file():
            continue
        start = time.perf_counter()
        bundle = TorchBundleDataset(filepath=str(path)).load()
        model = load_model(bundle)
        loaders = {}
        for name in ("train", "val"):
            rows = split == name
            loaders[name] = _loader(
                bundle,
                model,
                np.asarray(model_input.images[rows]),
                model_input.metadata[rows].reset_index(drop=True),
            )
        report = fit_ood(model, loaders["train"], loaders["val"], parse_tasks(bundle["tasks"]))
        known = _scores(model, _loader(bundle, model, known_images, known_meta, instrument), refused_known)
        unknown = _scores(model, _loader(bundle, model, ood_images, ood_meta, instrument), refused_ood)
        thresholds = {"mahalanobis": model.ood.threshold(REJECT_RATE)}
        results["models"][arch] = _family_metrics(known, unknown, known_groups, ood_meta, thresholds)
        results["models"][arch]["_fit"] = report
        logger.info("%s: %.0f s", arch, time.perf_counter() - start)
    return results


def _families(metrics: dict[str, Any]) -> list[str]:
    return [f for f in metrics if ":" not in f and not f.startswith("_")]


def _markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "# Unknown-material scores on a train_all run's models",
        "",
        f"`{command}` on {machine_name()}, {results['n_known']} known images (evaluation-set detector unit) "
        f"against {results['n_unknown']} unknown ones of the same instrument. AUROC (95 % specimen-bootstrap "
        "interval) / FPR at 95 % TPR (unknown accepted while 95 % of known are kept; lower is better). "
        f"Refused by the input guards (caught): {results['refused_by_family']}; known refused: "
        f"{results['refused_known']}.",
        "",
        "| model | score | " + " | ".join(f for f in _families(results["models"]["physics_limit"])) + " |",
        "|---|---|" + "---|" * len(_families(results["models"]["physics_limit"])),
    ]
    for model, families in results["models"].items():
        names = families[_families(families)[0]].keys()
        for name in names:
            cells = []
            for family, metrics in families.items():
                if ":" in family or family.startswith("_"):
                    continue
                m = metrics[name]
                ci = m.get("auroc_ci", [np.nan, np.nan])
                cells.append(f"{m['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] / {m['fpr_at_95tpr']:.2f}")
            lines.append(f"| {model} | {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Near-OOD AUROC per designation (physics ceiling beside the models):",
        "",
        "| model | score | "
        + " | ".join(f.split(":")[1] for f in results["models"]["physics_limit"] if ":" in f)
        + " |",
        "|---|---|" + "---|" * sum(":" in f for f in results["models"]["physics_limit"]),
    ]
    for model, families in results["models"].items():
        names = families[_families(families)[0]].keys()
        for name in names:
            cells = [f"{families[f][name]['auroc']:.3f}" for f in families if ":" in f]
            lines.append(f"| {model} | {name} | " + " | ".join(cells) + " |")
    separable = results.get("separability", {})
    names = [f.split(":")[1] for f in results["models"]["physics_limit"] if ":" in f]
    if separable:
        lines.append(
            "| separable at all (a classifier told the designation, on the physics fits; out-of-fold) | | "
            + " | ".join(f"{separable.get(n, float('nan')):.3f}" for n in names)
            + " |"
        )
    lines += [
        "",
        f"At the model's own threshold (rejecting {REJECT_RATE:.0%} of validation images):",
        "",
        "| model | known rejected | "
        + " | ".join(f for f in _families(results["models"]["physics_limit"]))
        + " |",
        "|---|---|" + "---|" * len(_families(results["models"]["physics_limit"])),
    ]
    for model, families in results["models"].items():
        if model == "physics_limit":
            continue
        fam = [f for f in families if ":" not in f and not f.startswith("_")]
        known = families[fam[0]]["mahalanobis"]["known_rejected"]
        cells = [f"{families[f]['mahalanobis']['unknown_rejected']:.3f}" for f in fam]
        lines.append(f"| {model} | {known:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--per-material", type=int, default=60)
    parser.add_argument("--n-known", type=int, default=750)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.manual_seed(0)
    results = run(args.project, args.archs.split(","), args.per_material, args.n_known)
    command = "python benchmarks/bench_ood.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in {"project", "tag"}
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_ood{args.tag}.json").write_text(json.dumps(results, indent=2, default=float))
    (RESULTS_DIR / f"bench_ood{args.tag}.md").write_text(_markdown(results, command))


if __name__ == "__main__":
    main()
