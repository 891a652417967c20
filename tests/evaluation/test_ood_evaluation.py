"""The generated unknown-material set and the AUROC / FPR metrics of OOD scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.evaluation.ood import (
    SYNTHETIC_FAMILIES,
    auroc,
    fpr_at_tpr,
    model_ood_report,
    ood_markdown,
    ood_metrics,
    simulate_ood_set,
)
from alloy_mtl.physics.materials import FAR_MATERIALS, NEAR_MATERIALS
from alloy_mtl.physics.simulator import SimulationConfig


def test_the_set_holds_every_family_imaged_like_the_known_images():
    config = SimulationConfig(seed=3, image_size=8)
    images, metadata = simulate_ood_set(config, 3)
    n_materials = len(NEAR_MATERIALS) + len(FAR_MATERIALS)
    assert images.shape == (3 * (n_materials + len(SYNTHETIC_FAMILIES)), 3, 8, 8)
    assert metadata["family"].value_counts().to_dict() == {
        "near": 3 * len(NEAR_MATERIALS), "far": 3 * len(FAR_MATERIALS), "open_beam": 3, "blank": 3, "dark": 3,
    }  # fmt: skip
    assert metadata["image_id"].is_unique
    open_beam = images[(metadata["family"] == "open_beam").to_numpy()]
    live = open_beam[open_beam > 0]  # dead pixels read 0
    assert live.mean() == pytest.approx(1.0, abs=0.02)
    blank = images[(metadata["family"] == "blank").to_numpy()]
    assert blank[blank > 0].mean() == pytest.approx(0.5, abs=0.01)


def test_auroc_and_fpr_read_the_scores_the_right_way_round():
    known = np.arange(100, dtype=float)
    assert auroc(known, known + 1000) == 1.0
    assert auroc(known + 1000, known) == 0.0
    assert auroc(known, np.array([np.inf, np.inf])) == 1.0  # refused inputs count as caught
    assert fpr_at_tpr(known, np.array([10.0, 200.0])) == 0.5  # 10 is under the 95th percentile of known
    metrics = ood_metrics(known, np.arange(100) // 2, known + 50, np.arange(100) // 2, threshold=94.0)
    assert metrics["auroc"] == pytest.approx(0.875)
    assert metrics["auroc_ci"][0] < metrics["auroc"] < metrics["auroc_ci"][1]
    assert metrics["known_rejected"] == pytest.approx(0.05)
    assert metrics["unknown_rejected"] == pytest.approx(0.55)


def _frames(shift: float):
    rng = np.random.default_rng(0)
    known = pd.DataFrame({"specimen_id": np.arange(200) // 2, "ood_score": rng.normal(0, 1, 200)})
    unknown = pd.DataFrame(
        {
            "family": ["far"] * 40 + ["near"] * 40,
            "specimen_id": np.arange(80) // 2,
            "ood_score": np.concatenate([rng.normal(shift, 1, 40), rng.normal(0.5, 1, 40)]),
            "ood_threshold": 2.0,
        }
    )
    return known, unknown


def test_model_report_and_comparison_section_name_every_family():
    known, unknown = _frames(10.0)
    report = model_ood_report(known, unknown, n_resamples=50)
    assert report["threshold"] == 2.0
    assert report["known_rejected"] == pytest.approx(np.mean(known["ood_score"] > 2.0))
    assert report["families"]["far"]["auroc"] == 1.0 and report["families"]["far"]["unknown_rejected"] == 1.0
    assert 0.5 < report["families"]["near"]["auroc"] < 0.9
    lines = ood_markdown({"fnn": report, "old": {"fit": {}}, "none": {}})
    text = "\n".join(lines)
    assert lines[0] == "## Unknown materials"
    assert "| model | known withheld | far | near |" in text
    assert "| fnn | " in text and "1.000 [1.000, 1.000] (100%)" in text
    assert "| old |" not in text  # a model without a fitted score has no row
    assert ood_markdown({"old": {"fit": {}}}) == []
    assert model_ood_report(known.assign(ood_score=np.nan), unknown) == {}
