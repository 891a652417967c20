"""benchmarks/bench_ensemble.py: its cross-validation, held-out table and member similarity on made-up
predictions whose answers are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_ensemble")


def _members(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 5
    top = rng.uniform(0.6, 0.9, n)
    good = np.repeat(((1 - top) / 4)[:, None], 5, axis=1)
    good[np.arange(n), y] = top
    noise = rng.dirichlet(np.ones(5), n)
    return {"good": good, "noise": noise}, y, np.array([f"s{i // 2}" for i in range(n)])


def test_cross_validation_scores_each_method_against_the_single_model_a_half_would_choose():
    probs, y, specimens = _members()
    cv = bench.cross_validation(probs, y, specimens, repeats=3, seed=0)
    assert set(cv["method"]) == set(bench.METHODS) and len(cv) == 3 * len(bench.METHODS)
    assert np.allclose(cv["chosen_single"], 1.0) and np.allclose(cv["hindsight_best"], 1.0)
    greedy = cv[cv["method"] == "greedy"]
    assert np.allclose(greedy["macro_ap"], 1.0)  # greedy keeps the perfect ranker alone


def test_held_out_and_similarity_name_the_models():
    probs, y, _ = _members()
    table = bench.held_out(probs, y, {"test": (probs, y)})
    assert table.loc[0, "chosen_single"].startswith("good") and table.loc[0, "greedy"] == 1.0
    alike = bench.similarity({"a": probs["good"], "b": probs["good"].copy(), "c": probs["noise"]}, y)
    same = alike.set_index("pair").loc["a / b"]
    assert same["top_answer_differs"] == 0.0 and same["true_class_prob_corr"] == pytest.approx(1.0)
    assert alike.set_index("pair").loc["a / c", "top_answer_differs"] > 0.5
