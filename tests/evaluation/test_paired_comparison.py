"""The paired comparison of two models on the same images and the gate's rule on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.bootstrap import classification_intervals
from alloy_mtl.evaluation.classification import classification_metrics
from alloy_mtl.evaluation.paired_comparison import paired_comparison, paired_decision

N_SPECIMENS, PER_SPECIMEN = 80, 3


def predictions(
    quality: float | dict[str, float], model_seed: int, condition_seed: int = 0, own_noise: float = 0.3
) -> pd.DataFrame:
    """One model's predictions of one condition's images: every model shares the images' difficulty (the same
    ``condition_seed`` draws it) and adds its own noise; ``quality`` (per true alloy, or one for all) is how far
    the true alloy's logit stands out."""
    shared = np.random.default_rng(condition_seed)
    own = np.random.default_rng(1000 + model_seed)
    n = N_SPECIMENS * PER_SPECIMEN
    truth = np.repeat(np.arange(N_SPECIMENS) % len(ALLOYS), PER_SPECIMEN)
    quality = quality if isinstance(quality, dict) else dict.fromkeys(ALLOYS, quality)
    boost = np.array([quality[ALLOYS[k]] for k in truth])
    logits = shared.normal(size=(n, len(ALLOYS))) + own_noise * own.normal(size=(n, len(ALLOYS)))
    logits[np.arange(n), truth] += boost
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "image_id": [f"c{condition_seed}-i{i}" for i in range(n)],
            "specimen_id": [f"s{i // PER_SPECIMEN}" for i in range(n)],
            "alloy_true": [ALLOYS[k] for k in truth],
            "alloy_pred": [ALLOYS[k] for k in probs.argmax(axis=1)],
        }
    )
    for k, alloy in enumerate(ALLOYS):
        frame[f"prob_{alloy}"] = probs[:, k]
    return frame


def suite(quality, model_seed: int, conditions=("unseen_detector_1", "kv_x1.02")) -> dict[str, pd.DataFrame]:
    return {name: predictions(quality, model_seed, condition_seed=i) for i, name in enumerate(conditions)}


def test_a_model_against_itself_differs_by_exactly_zero_and_is_never_promoted():
    same = suite(1.5, model_seed=1)
    comparison = paired_comparison(same, same, n_resamples=300)
    assert (comparison.difference, comparison.ci_low, comparison.ci_high) == (0.0, 0.0, 0.0)
    assert all(drop == 0.0 for drop in comparison.alloy_ap_drop.values())
    assert (
        paired_decision(comparison, min_margin=0.0, alloy_tolerance=0.02)[0] is False
    )  # a tie never moves it


def test_the_statistic_is_each_models_worst_condition_as_sklearn_scores_it():
    challenger = {"a": predictions(2.5, 1, condition_seed=0), "b": predictions(1.0, 1, condition_seed=1)}
    champion = {"a": predictions(0.8, 2, condition_seed=0), "b": predictions(2.0, 2, condition_seed=1)}
    comparison = paired_comparison(challenger, champion, n_resamples=200)

    def macro(frame):
        return classification_metrics(frame, ALLOYS)["macro_ap"]

    assert comparison.challenger == pytest.approx(min(macro(challenger["a"]), macro(challenger["b"])))
    assert comparison.champion == pytest.approx(min(macro(champion["a"]), macro(champion["b"])))
    assert (comparison.challenger_worst_condition, comparison.champion_worst_condition) == ("b", "a")
    assert comparison.difference == pytest.approx(comparison.challenger - comparison.champion)
    assert comparison.ci_low <= comparison.difference <= comparison.ci_high
    assert (comparison.n_images, comparison.n_specimens) == (2 * N_SPECIMENS * PER_SPECIMEN, N_SPECIMENS)
    assert comparison.statistic == "worst macro AP over 2 conditions"


def test_pairing_narrows_the_interval_and_a_clearly_better_challenger_is_promoted():
    challenger, champion = suite(2.2, model_seed=1), suite(1.6, model_seed=2)
    comparison = paired_comparison(challenger, champion, n_resamples=500, seed=3)
    promoted, reason = paired_decision(comparison, min_margin=0.005, alloy_tolerance=0.02)
    assert promoted, reason
    assert comparison.ci_low > 0.005 and "lower end above the margin" in reason

    # two close models on the same images: most of each one's sampling error is the images', shared by both
    one = {"c": predictions(1.8, model_seed=1)}, {"c": predictions(1.6, model_seed=2)}
    paired = paired_comparison(*one, n_resamples=500, seed=3)
    alone = [
        classification_intervals(frame["c"], ALLOYS, n_resamples=500, seed=seed)["macro_ap"]
        for frame, seed in zip(one, (4, 5), strict=True)
    ]
    unpaired_width = np.hypot(*(high - low for low, high in alone))  # independent intervals' width combined
    assert paired.ci_high - paired.ci_low < 0.6 * unpaired_width  # measured: 0.43
    assert paired.statistic == "macro AP on c"


def test_an_alloy_that_falls_blocks_the_promotion_and_is_named():
    champion = suite(1.5, model_seed=2)
    challenger = suite({**dict.fromkeys(ALLOYS, 3.0), "7075": 0.3}, model_seed=1)
    comparison = paired_comparison(challenger, champion, n_resamples=300)
    assert comparison.ci_low > 0.005  # better on the macro average
    assert comparison.alloy_ap_drop["7075"] > 0.05
    assert max(drop for alloy, drop in comparison.alloy_ap_drop.items() if alloy != "7075") < 0
    promoted, reason = paired_decision(comparison, min_margin=0.005, alloy_tolerance=0.02)
    assert not promoted
    assert "alloy 7075's AP falls by" in reason and "tolerance 0.02" in reason


def test_the_same_seed_gives_the_same_interval_and_row_order_does_not_matter():
    challenger, champion = suite(2.0, 1), suite(1.8, 2)
    first = paired_comparison(challenger, champion, n_resamples=200, seed=7)
    shuffled = {name: frame.sample(frac=1.0, random_state=0) for name, frame in champion.items()}
    assert paired_comparison(challenger, shuffled, n_resamples=200, seed=7) == first
    assert paired_comparison(challenger, champion, n_resamples=200, seed=8) != first


def test_predictions_of_other_images_or_conditions_are_refused():
    challenger = suite(2.0, 1)
    with pytest.raises(ValueError, match="different conditions"):
        paired_comparison(challenger, suite(2.0, 2, conditions=("unseen_detector_1",)))
    other = suite(2.0, 2)
    other["kv_x1.02"] = other["kv_x1.02"].iloc[:-3]
    with pytest.raises(ValueError, match="different images of condition 'kv_x1.02'"):
        paired_comparison(challenger, other)
    with pytest.raises(ValueError, match="no condition"):
        paired_comparison({}, {})
