"""Unknown-material (out-of-distribution) evaluation: a generated set of what the models never saw, and scores.

The set is imaged by the same instrument as the known images it is compared with (a ``SimulationConfig``):

- ``near``: other aluminium designations (``physics.materials.NEAR_MATERIALS``), wedges like the five alloys;
- ``far``: other engineering materials (``physics.materials.FAR_MATERIALS``);
- ``open_beam``: the instrument with nothing in the beam (its noise, heel, fixed pattern and dead pixels);
- ``blank``: a uniform absorber with no wedge (the open beam at half intensity);
- ``dark``: the tube off (the open beam at 0.1 % intensity: the dark signal).

An OOD score is higher for less familiar images. AUROC separates known (negative) from unknown (positive);
FPR at 95 % TPR is the share of unknown images *accepted* when the threshold keeps 95 % of known ones.
Intervals resample specimens (``evaluation.bootstrap``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from alloy_mtl.evaluation.bootstrap import specimen_weights
from alloy_mtl.physics.alloys import AlloySpec
from alloy_mtl.physics.materials import FAR_MATERIALS, NEAR_MATERIALS, OPEN_BEAM
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

__all__ = [
    "OOD_RESAMPLES",
    "PHYSICS_UNKNOWN_ROW",
    "SYNTHETIC_FAMILIES",
    "auroc",
    "fpr_at_tpr",
    "model_ood_report",
    "ood_markdown",
    "ood_metrics",
    "simulate_ood_set",
]

OOD_RESAMPLES = 200
"""Bootstrap resamples of an OOD AUROC interval (each resample refits an AUROC per family)."""

SYNTHETIC_FAMILIES: Mapping[str, float] = MappingProxyType({"open_beam": 1.0, "blank": 0.5, "dark": 1e-3})
"""Images with no specimen: name -> intensity factor applied to the open beam."""


def simulate_ood_set(
    config: SimulationConfig,
    images_per_material: int,
    materials: Mapping[str, AlloySpec] | None = None,
    extra_far: Mapping[str, AlloySpec] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Images (N, C, H, W) and metadata (``image_id``, ``specimen_id``, ``material``, ``family``) of the set.

    Args:
        config: the instrument, geometry and noise (e.g. the evaluation set's config).
        images_per_material: images of every material and of every synthetic family.
        materials: near-OOD designations (default: ``NEAR_MATERIALS``).
        extra_far: far-OOD materials added to ``FAR_MATERIALS`` (e.g. a user's own).
    """
    near = dict(NEAR_MATERIALS if materials is None else materials)
    far = {**FAR_MATERIALS, **dict(extra_far or {})}
    specs = [(spec, images_per_material) for spec in (*near.values(), *far.values())]
    images, metadata = simulate_dataset(config, materials=specs)
    family = np.where(metadata["alloy"].isin(list(near)), "near", "far")
    frames = [
        pd.DataFrame(
            {
                "image_id": "ood-" + metadata["image_id"].astype(str),
                "specimen_id": "ood-" + metadata["specimen_id"].astype(str),
                "material": metadata["alloy"].to_numpy(),
                "family": family,
            }
        )
    ]
    blank_config = SimulationConfig(**{**config.__dict__, "seed": config.seed + 1})
    open_beam, _ = simulate_dataset(blank_config, materials=[(OPEN_BEAM, images_per_material)])
    parts = [images]
    for name, factor in SYNTHETIC_FAMILIES.items():
        parts.append((open_beam * factor).astype(np.float32))
        frames.append(
            pd.DataFrame(
                {
                    "image_id": [f"ood-{name}-{i:05d}" for i in range(len(open_beam))],
                    "specimen_id": [f"ood-{name}-{i:05d}" for i in range(len(open_beam))],
                    "material": name,
                    "family": name,
                }
            )
        )
    return np.concatenate(parts), pd.concat(frames, ignore_index=True)


def auroc(
    known: np.ndarray, unknown: np.ndarray, weights: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """AUROC of separating ``unknown`` (positive) from ``known`` scores; infinite scores (refused inputs) rank
    above every finite one."""
    scores = np.concatenate([known, unknown]).astype(np.float64)
    scores = np.where(np.isposinf(scores), np.finfo(np.float64).max, scores)
    truth = np.concatenate([np.zeros(len(known)), np.ones(len(unknown))])
    sample_weight = None if weights is None else np.concatenate(weights)
    return float(roc_auc_score(truth, scores, sample_weight=sample_weight))


def fpr_at_tpr(known: np.ndarray, unknown: np.ndarray, tpr: float = 0.95) -> float:
    """Share of ``unknown`` images accepted at the threshold that keeps ``tpr`` of ``known`` ones."""
    threshold = np.quantile(known, tpr)
    return float(np.mean(unknown <= threshold))


def _interval(values: Sequence[float]) -> list[float]:
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


def ood_metrics(
    known: np.ndarray,
    known_groups: np.ndarray,
    unknown: np.ndarray,
    unknown_groups: np.ndarray,
    *,
    threshold: float | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC and FPR at 95 % TPR of one unknown family against the known images, with specimen-bootstrap 95 %
    intervals of the AUROC; with a ``threshold`` (the model's), the shares rejected at it."""
    out: dict[str, Any] = {
        "auroc": auroc(known, unknown),
        "fpr_at_95tpr": fpr_at_tpr(known, unknown),
        "n_known": len(known),
        "n_unknown": len(unknown),
    }
    if n_resamples:
        wk = specimen_weights(known_groups, n_resamples, seed)
        wu = specimen_weights(unknown_groups, n_resamples, seed + 1)
        out["auroc_ci"] = _interval([auroc(known, unknown, (a, b)) for a, b in zip(wk, wu, strict=True)])
    if threshold is not None:
        out["known_rejected"] = float(np.mean(known > threshold))
        out["unknown_rejected"] = float(np.mean(unknown > threshold))
    return out


def model_ood_report(
    known: pd.DataFrame, unknown: pd.DataFrame, n_resamples: int = 200, seed: int = 0
) -> dict[str, Any]:
    """One model's OOD metrics per family of ``unknown`` (``family``, ``specimen_id``, ``ood_score``,
    ``ood_threshold``) against ``known`` (``specimen_id``, ``ood_score``: the evaluation set's predictions),
    plus ``known_rejected`` at the model's threshold; empty when the model carries no fitted score."""
    if known.empty or unknown.empty or "ood_score" not in known or not np.isfinite(known["ood_score"]).any():
        return {}
    threshold = float(unknown["ood_threshold"].iloc[0])
    k_scores = known["ood_score"].to_numpy(np.float64)
    k_groups = known["specimen_id"].astype(str).to_numpy()
    families = {
        str(family): ood_metrics(
            k_scores,
            k_groups,
            rows["ood_score"].to_numpy(np.float64),
            rows["specimen_id"].astype(str).to_numpy(),
            threshold=threshold,
            n_resamples=n_resamples,
            seed=seed,
        )
        for family, rows in unknown.groupby("family", sort=False)
    }
    return {
        "threshold": threshold,
        "known_rejected": float(np.mean(k_scores > threshold)),
        "families": families,
    }


PHYSICS_UNKNOWN_ROW = "physics unknown score"
"""The OOD section's row of the physics unknown-designation score (``alloy_mtl.evaluation.physics_unknown``)."""


def _auroc_cell(m: Mapping[str, Any] | None) -> str:
    if m is None:
        return ""
    ci = m.get("auroc_ci") or [np.nan, np.nan]
    return f"{m['auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({m['unknown_rejected']:.0%})"


def ood_markdown(
    reports: Mapping[str, Mapping[str, Any]],
    physics: Mapping[str, Any] | None = None,
    with_physics: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """The comparison's section: per model and family, AUROC [95 % interval] and the share answered
    ``unknown`` at the model's threshold; with the physics score's report (``physics``), its row and, per model
    in ``with_physics``, the shares it answers unknown with the physics score beside it (as folder inference
    does). None when no model has a report."""
    reports = {name: report for name, report in reports.items() if report.get("families")}
    if not reports:
        return []
    physics = physics if physics and physics.get("families") else None
    families = list(dict.fromkeys(f for report in reports.values() for f in report["families"]))
    lines = [
        "## Unknown materials",
        "",
        "Each model's unknown-material score on a generated set of what it never saw (other aluminium "
        "designations = near; other materials = far; open beam, blank, dark), imaged by the evaluation set's "
        "instrument, against the evaluation set's images. AUROC [95 % specimen-bootstrap interval]; "
        "answered unknown at the model's served threshold (default reject_rate) in brackets, and the share of "
        "known images withheld.",
        "",
        "| model | known withheld | " + " | ".join(families) + " |",
        "|---|---|" + "---|" * len(families),
    ]
    for name, report in reports.items():
        cells = [_auroc_cell(report["families"].get(family)) for family in families]
        lines.append(f"| {name} | {report['known_rejected']:.1%} | " + " | ".join(cells) + " |")
    if physics is None:
        return [*lines, ""]
    cells = [_auroc_cell(physics["families"].get(family)) for family in families]
    lines.append(f"| {PHYSICS_UNKNOWN_ROW} | {physics['known_rejected']:.1%} | " + " | ".join(cells) + " |")
    for name, report in (with_physics or {}).items():
        cells = [
            f"({m['unknown_rejected']:.0%})" if (m := report["families"].get(family)) else ""
            for family in families
        ]
        lines.append(f"| {name} + physics | {report['known_rejected']:.1%} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"`{PHYSICS_UNKNOWN_ROW}`: the physics unknown-designation score (`kedro run --pipeline unknown_materials`) on "
        "the same images, mixed into one stream and scored as folder inference scores it (the instrument fitted "
        "per batch of the stream; images the input guards refuse count as answered unknown). `<model> + "
        "physics`: what folder inference answers, unknown where either score is above its threshold.",
    ]
    return [*lines, ""]
