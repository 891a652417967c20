"""Grouped, stratified, seeded split with guaranteed minima for long-tailed classes; the lab's own split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.split import assign_split, resolve_strategy, split_dataset, split_summary

from .conftest import make_metadata

LONG_TAIL = {"1050": 250, "2017": 60, "5083": 20, "6082": 10, "7075": 5}  # 50:1


@pytest.fixture
def tail() -> pd.DataFrame:
    md = make_metadata(LONG_TAIL, images_per_specimen=3)
    md["thickness_mm"] = md["thickness_mm"] % 17 + 0.5
    number = md["specimen_id"].str.rsplit("-", n=1).str[1].astype(int)
    md.loc[number % 7 == 3, "thickness_mm"] = np.nan
    return md


def specimen_counts(md: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    return md.assign(split=split).groupby(["alloy", "split"])["specimen_id"].nunique().unstack(fill_value=0)


def test_no_specimen_in_two_splits(tail: pd.DataFrame) -> None:
    split = split_dataset(tail, seed=3)
    assert split.index.equals(tail.index)
    assert split.isin(["train", "val", "test"]).all()
    assert tail.assign(split=split).groupby("specimen_id")["split"].nunique().max() == 1


def test_minima_hold_for_the_tail(tail: pd.DataFrame) -> None:
    split = split_dataset(tail, min_per_class={"val": 2, "test": 2})
    counts = specimen_counts(tail, split)
    assert (counts[["val", "test"]] >= 2).all().all()
    assert counts.loc["7075"].to_dict() == {"test": 2, "train": 1, "val": 2}  # 5 specimens: minima win
    assert (counts["train"] >= 1).all()


def test_fractions_roughly_respected(tail: pd.DataFrame) -> None:
    split = split_dataset(tail)
    shares = split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.03)
    assert shares["val"] == pytest.approx(0.15, abs=0.03)
    assert shares["test"] == pytest.approx(0.15, abs=0.03)
    head = split[tail["alloy"] == "1050"].value_counts(normalize=True)
    assert head["train"] == pytest.approx(0.7, abs=0.01)


def test_stratified_by_thickness_bin(tail: pd.DataFrame) -> None:
    md = tail[tail["alloy"] == "1050"]
    split = split_dataset(tail)[md.index]
    thin = md["thickness_mm"] < md["thickness_mm"].quantile(1 / 3)
    missing = md["thickness_mm"].isna()
    for subset in (thin, missing):
        assert split[subset].value_counts(normalize=True)["test"] == pytest.approx(0.15, abs=0.05)


def test_deterministic_and_seed_dependent(tail: pd.DataFrame) -> None:
    a, b, c = split_dataset(tail, seed=7), split_dataset(tail, seed=7), split_dataset(tail, seed=8)
    pd.testing.assert_series_equal(a, b)
    assert (a != c).mean() > 0.1


def test_too_few_specimens_named() -> None:
    md = make_metadata({**dict.fromkeys(ALLOYS, 6), "7075": 4})
    with pytest.raises(ValueError, match=r"alloy '7075' has 4 specimen\(s\) but the minima .* need 5"):
        split_dataset(md)
    split = split_dataset(md, min_per_class={"val": 1, "test": 2})
    assert specimen_counts(md, split).loc["7075"].to_dict() == {"test": 2, "train": 1, "val": 1}


def test_argument_errors(tail: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        split_dataset(tail, fractions={"train": 0.5, "val": 0.2, "test": 0.2})
    with pytest.raises(ValueError, match=r"unknown split name\(s\) \['holdout'\]"):
        split_dataset(tail, min_per_class={"holdout": 1})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['thickness_mm'\]"):
        split_dataset(tail.drop(columns="thickness_mm"))
    bad = tail.copy()
    bad.loc[0, "alloy"] = "2017"
    with pytest.raises(ValueError, match=r"specimen\(s\) \['spec-1050-0'\] have images of several alloys"):
        split_dataset(bad)


def test_split_summary_counts() -> None:
    md = make_metadata({"1050": 1, "2017": 1}, images_per_specimen=2)
    split = pd.Series(["train", "train", "val", "test"], index=md.index)
    table = split_summary(md, split)
    assert table.to_dict(orient="index") == {
        "1050": {"train": 2, "val": 0, "test": 0, "total": 2},
        "2017": {"train": 0, "val": 1, "test": 1, "total": 2},
    }


def with_given_split(specimens_per_split: dict[str, int]) -> pd.DataFrame:
    """Every alloy with the given number of specimens (2 images each) per lab split."""
    total = sum(specimens_per_split.values())
    md = make_metadata(dict.fromkeys(ALLOYS, total), images_per_specimen=2)
    labels = [s for s, n in specimens_per_split.items() for _ in range(n)]
    number = md["specimen_id"].str.rsplit("-", n=1).str[1].astype(int)
    md["given_split"] = [labels[k] for k in number]
    return md


def test_auto_keeps_the_given_split() -> None:
    md = with_given_split({"train": 6, "val": 2, "test": 2})  # 60 / 20 / 20, not 70 / 15 / 15
    split, used = assign_split(md, "auto", seed=3)
    assert used == "given"
    assert split.tolist() == md["given_split"].tolist()
    assert split_summary(md, split, used)["strategy"].eq("given").all()


def test_auto_without_a_given_split_splits_grouped(tail: pd.DataFrame) -> None:
    split, used = assign_split(tail, "auto", seed=1)
    assert used == "grouped"
    pd.testing.assert_series_equal(split, split_dataset(tail, seed=1))


def test_grouped_resplits_data_that_carry_a_split() -> None:
    md = with_given_split({"train": 6, "val": 2, "test": 2})
    split, used = assign_split(md, "grouped")
    assert used == "grouped"
    assert split.tolist() != md["given_split"].tolist()


def test_given_requires_a_split_in_the_data(tail: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"strategy 'given': the data carry no split"):
        resolve_strategy(tail, "given")


def test_a_specimen_crossing_the_given_splits_is_refused() -> None:
    md = with_given_split({"train": 6, "val": 2, "test": 2})
    crossing = md.index[md["specimen_id"] == "spec-7075-0"][1]
    md.loc[crossing, "given_split"] = "test"  # one image of a train specimen filed under test
    with pytest.raises(DataValidationError) as err:
        assign_split(md, "auto")
    message = str(err.value)
    assert "1 specimen(s) cross splits" in message
    assert "'spec-7075-0' (test: 1, train: 1 images)" in message
    assert "split.strategy: grouped" in message


def test_given_split_short_of_the_minima_names_each_alloy() -> None:
    md = with_given_split({"train": 6, "val": 1, "test": 2})
    with pytest.raises(DataValidationError) as err:
        assign_split(md, "given", min_per_class={"val": 2, "test": 2})
    message = str(err.value)
    for alloy in ALLOYS:
        assert f"alloy '{alloy}' has 1 specimen(s) in val, split.min_per_class.val needs 2" in message
    split, _ = assign_split(md, "given", min_per_class={"val": 1, "test": 2})
    assert (split == "val").sum() == 10


def test_given_split_with_unlabelled_images_is_refused() -> None:
    md = with_given_split({"train": 6, "val": 2, "test": 2})
    md.loc[[3, 4], "given_split"] = None
    with pytest.raises(DataValidationError, match=r"2 image\(s\) have no split: img-1050-1-1, img-1050-2-0"):
        assign_split(md, "auto")
